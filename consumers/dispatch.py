"""dispatch: claim, send over a reused SMTP connection, record every outcome.

Claim before send: the conditional UPDATE in `delivery_claim` lets exactly one worker own a
delivery, so a redelivered, replayed or duplicated batch sends nothing twice. Outcomes and
their journal events are written for the whole batch in one transaction.
"""
import random
import threading
from email.utils import formatdate

import dramatiq

from app.config import Config
from app.db import pool, q
from app.services import journal
from app.services.campaign import complete_if_done
from app.services.journal import Event
from app.smtp import SendOutcome, SmtpConnection, SmtpServer

from . import cache, state
from .broker import broker  # noqa: F401

_local = threading.local()
MAX_RETRY_DELAY_MS = 15 * 60 * 1000  # well under RabbitMQ's 30 min consumer timeout


def connection() -> SmtpConnection:
    conn = getattr(_local, "smtp", None)
    if conn is None:
        conn = _local.smtp = SmtpConnection(SmtpServer.from_url(Config.SMTP_URL))
    return conn


def retry_delay_ms(attempt: int) -> int:
    """Exponential backoff with full jitter: 2 s, 4 s, 8 s ... capped at 15 minutes."""
    base = min(MAX_RETRY_DELAY_MS, 1000 * 2 ** attempt)
    return int(base / 2 + random.random() * base / 2)


def is_unknown_user(outcome: SendOutcome) -> bool:
    """A 550-class reply about the mailbox itself: the address goes on the suppression list."""
    reply = outcome.reply.lower()
    return outcome.code in (550, 551, 553) and any(
        w in reply for w in ("user", "mailbox", "recipient", "no such", "5.1.1", "address rejected"))


@dramatiq.actor(queue_name="dispatch", max_retries=20, min_backoff=1000, max_backoff=60_000)
def dispatch(campaign_id: int, emails: list[dict]):
    if not state.is_running(campaign_id):
        return  # still open in PostgreSQL; resume re-enqueues
    campaign = cache.campaign(campaign_id)
    with pool().connection() as conn:
        claimed = {r["id"]: r["attempts"] for r in conn.execute(
            q.delivery_claim, {"ids": [e["d"] for e in emails], "campaign_id": campaign_id})}
    events = [Event("delivery.duplicate_dropped", campaign_id, e["d"], e["to"])
              for e in emails if e["d"] not in claimed]

    skeleton = cache.skeleton(campaign_id)
    smtp = connection()
    date = formatdate()
    outcomes, retries, unclaimed, suppress = [], [], [], []
    for e in emails:
        attempt = claimed.get(e["d"])
        if attempt is None:
            continue
        if unclaimed or not state.is_running(campaign_id):
            unclaimed.append(e["d"])  # paused or stopped mid-batch: give the rest back untouched
            continue
        message_id = skeleton.message_id(e["d"])
        message = skeleton.build_message(to_name=e["n"], to_email=e["to"], subject=e["s"], html=e["h"],
                                         text=e["t"], message_id=message_id, unsubscribe_url=e["u"],
                                         date=date)
        try:
            reply = smtp.send(campaign["from_email"], e["to"], message)
        except SendOutcome as o:
            if o.permanent:
                status = "failed"
                if is_unknown_user(o):
                    suppress.append(e["to"])
            elif attempt >= campaign["max_attempts"]:
                status = "dead"
            else:
                status = "retry"
                retries.append(e)
            outcomes.append((e, attempt, status, o.reply, None))
            continue
        outcomes.append((e, attempt, "sent", reply, message_id))

    with pool().connection() as conn:
        conn.execute(q.delivery_record_outcomes, {
            "ids": [o[0]["d"] for o in outcomes],
            "statuses": [o[2] for o in outcomes],
            "replies": [o[3] for o in outcomes],
            "errors": [None if o[2] == "sent" else o[3] for o in outcomes],
            "message_ids": [o[4] for o in outcomes],
        })
        if unclaimed:
            conn.execute(q.delivery_unclaim, {"ids": unclaimed})
        if suppress:
            conn.execute(q.suppression_add_bounces, {"emails": suppress})
        events += [Event("delivery." + status, campaign_id, e["d"], e["to"],
                         detail={"attempt": attempt, "reply": reply, "message_id": mid},
                         key=f"d{e['d']}.a{attempt}.{status}")
                   for e, attempt, status, reply, mid in outcomes]
        journal.append(conn, events)
        conn.commit()
        if retries:
            attempt = max(claimed[e["d"]] for e in retries)
            dispatch.send_with_options(args=(campaign_id, retries), delay=retry_delay_ms(attempt))
        else:
            complete_if_done(conn, campaign_id)
