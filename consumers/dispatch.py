"""dispatch: claim, send over pooled SMTP connections, record every outcome.

Claim before send: the conditional UPDATE in `delivery_claim` lets exactly one worker own a
delivery, so a redelivered, replayed or duplicated batch sends nothing twice; what it
skips is journaled as dropped. A batch is claimed a chunk at a time (DISPATCH_CLAIM_CHUNK),
and the outcomes of one chunk are written in the same transaction that claims the next, so
a worker killed mid-batch leaves at most one chunk per thread `unknown`, and untouched
emails simply open. A chunk goes out in one pipelined SMTP run (`Sender.send_many`); against
a slow, rate-limited server its outcomes are also written every RECORD_EVERY seconds.

Outcomes: 2xx sent; 4xx, refused, timeout or dropped mid-DATA retried through the
`dispatch.DQ` delay queue with exponential backoff and jitter, up to the campaign's
max_attempts; then `dead`, recorded as a dead letter and copied to `dispatch.XQ`. A 5xx
fails at once; a 550-class "no such user" also suppresses the address.
"""
import logging
import random
import re
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from email.utils import formatdate

import dramatiq
import orjson
import psycopg
from dramatiq.middleware import CurrentMessage
from psycopg.types.json import Jsonb

from app.config import Config
from app.db import pool, q
from app.services import journal
from app.services.campaign import complete_if_done
from app.services.journal import Event
from app.smtp import SendOutcome, SmtpPool, configured_servers

from . import cache, state
from .broker import broker
from .heartbeat import worker_id
from .messages import Email

log = logging.getLogger("dispatch")
RECORD_PATIENCE = 120.0  # seconds to keep trying to write outcomes we know while PostgreSQL is away
_SURROGATE = re.compile("[\ud800-\udfff]")
RECORD_EVERY = 0.5  # seconds: outcomes of a chunk still sending are written at least this often

_pool: SmtpPool | None = None
_pool_lock = threading.Lock()


def smtp_pool() -> SmtpPool:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = SmtpPool(configured_servers(), Config.SMTP_FAILOVER_AFTER, Config.SMTP_COOLDOWN_SECONDS)
    return _pool


def retry_delay_ms(attempt: int) -> int:
    """Exponential backoff with jitter: the n-th retry waits between half and all of
    RETRY_BASE_MS * 2^(n-1), never more than RETRY_MAX_MS (below RabbitMQ's consumer timeout)."""
    base = min(Config.RETRY_MAX_MS, Config.RETRY_BASE_MS * 2 ** max(0, attempt - 1))
    return int(base / 2 + random.random() * base / 2)


def is_unknown_user(outcome: SendOutcome) -> bool:
    """A 550-class reply about the mailbox itself: the address goes on the suppression list."""
    reply = outcome.reply.lower()
    return outcome.code in (550, 551, 553) and any(
        w in reply for w in ("user", "mailbox", "recipient", "no such", "5.1.1", "address rejected"))


@dataclass
class Outcome:
    email: dict
    attempt: int
    status: str  # sent, failed, retry, dead
    reply: str
    message_id: str | None = None
    wait_ms: int | None = None
    not_tried: bool = False
    suppress: bool = False

    @property
    def row(self) -> dict:
        """As delivery_record_outcomes reads it (it journals the outcome too)."""
        return {"id": self.email["d"], "email": self.email["to"], "status": self.status, "reply": self.reply,
                "message_id": self.message_id, "attempt": self.attempt, "not_tried": int(self.not_tried),
                "wait_ms": self.wait_ms}

    @property
    def key(self) -> str | None:
        """One outcome per attempt; a deferral is no attempt and may happen again."""
        return None if self.not_tried else f"d{self.email['d']}.a{self.attempt}.{self.status}"


def _message_id() -> str | None:
    message = CurrentMessage.get_current_message()
    return message.message_id if message else None


class _Batch:
    """The database side of one dispatch message: claims, outcomes, journal, dead letters."""

    def __init__(self, campaign_id: int):
        self.campaign_id = campaign_id
        self.claimed_by = f"{worker_id()}/{secrets.token_hex(4)}"
        self.source_message = _message_id()
        self.stopped = False  # a claim found the campaign paused or stopped
        self.claimed_any = False  # its claims are noted in delivery_claims until settled

    def commit(self, outcomes: list[Outcome], unclaimed: list[int], claim: list[dict],
               smtp_events: list[tuple[str, dict]], release: bool = False) -> dict[int, tuple[int, int]]:
        """Write outcomes and claim the next chunk in one transaction, retried while the
        database is unreachable (we hold the truth about what was sent). Every write is
        idempotent, so a retry after a commit whose answer was lost changes nothing."""
        deadline = time.monotonic() + RECORD_PATIENCE
        pause = 0.5
        while True:
            try:
                return self._commit(outcomes, unclaimed, claim, smtp_events, release)
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("database unavailable while recording a batch (%s); retrying", exc)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _commit(self, outcomes, unclaimed, claim, smtp_events, release):
        cid = self.campaign_id
        events = [Event(kind, cid, source="dispatch", detail=detail) for kind, detail in smtp_events]
        with pool().connection() as conn:
            if outcomes:
                conn.execute(q.delivery_record_outcomes, {
                    "outcomes": outcomes_json(outcomes), "claimed_by": self.claimed_by,
                    "campaign_id": cid})
            if unclaimed:
                conn.execute(q.delivery_unclaim, {"ids": unclaimed, "claimed_by": self.claimed_by})
            if release:
                conn.execute(q.delivery_claim_release, {"claimed_by": self.claimed_by})
            suppress = [o.email["to"] for o in outcomes if o.suppress]
            if suppress:
                conn.execute(q.suppression_add_bounces, {"emails": suppress})
                events += [Event("suppression.added", cid, o.email["d"], o.email["to"], source="dispatch",
                                 key=f"{o.key}.suppressed",
                                 detail={"reason": o.reply}) for o in outcomes if o.suppress]
            dead = [o for o in outcomes if o.status == "dead"]
            if dead:
                conn.execute(q.dead_letter_insert, {
                    "keys": [o.key for o in dead], "queue_name": "dispatch",
                    "campaign_ids": [cid] * len(dead), "delivery_ids": [o.email["d"] for o in dead],
                    "emails": [o.email["to"] for o in dead], "actor_names": ["dispatch"] * len(dead),
                    "reasons": [f"no delivery after {o.attempt} attempts: {o.reply}" for o in dead],
                    "messages": [Jsonb(_dead_message(cid, o).asdict()) for o in dead],
                    "raws": [None] * len(dead)})
            claimed = {}
            if claim:
                ids = [e["d"] for e in claim]
                params = {"ids": ids, "campaign_id": cid, "claimed_by": self.claimed_by}
                rows = conn.execute(q.delivery_claim, params).fetchall()
                status = "running"
                if len(rows) < len(ids):
                    rows += conn.execute(q.delivery_claimed_by, params).fetchall()
                    status = conn.execute(q.campaign_status, {"id": cid}).fetchone()["status"]
                    self.stopped = status != "running"
                claimed = {r["id"]: (r["attempts"], r["round_attempt"]) for r in rows}
                self.claimed_any = self.claimed_any or bool(claimed)
                if status in ("running", "completed"):  # paused or stopped: open, not duplicates
                    events += [Event("delivery.duplicate_dropped", cid, e["d"], e["to"], source="dispatch",
                                     detail={"message": self.source_message},
                                     key=f"dup.{self.source_message}.{e['d']}" if self.source_message else None)
                               for e in claim if e["d"] not in claimed]
            journal.append(conn, events)
        return claimed


def outcomes_json(outcomes: list[Outcome]) -> str:
    """The outcomes as delivery_record_outcomes reads them. A lone surrogate (an address in a
    message published by hand) is valid in neither UTF-8 nor PostgreSQL's JSON: it is stored
    as U+FFFD rather than failing the batch's commit again at every retry."""
    rows = [o.row for o in outcomes]
    try:
        return orjson.dumps(rows).decode()
    except TypeError:
        return orjson.dumps([{k: _SURROGATE.sub("\ufffd", v) if isinstance(v, str) else v
                              for k, v in row.items()} for row in rows]).decode()


def _dead_message(campaign_id: int, outcome: Outcome) -> dramatiq.Message:
    """The dead email as a dispatch message of its own, as it sits in dispatch.XQ."""
    return dispatch.message_with_options(
        args=(campaign_id, [outcome.email]),
        dead_reason=f"no delivery after {outcome.attempt} attempts: {outcome.reply}",
        dead_key=outcome.key).copy(queue_name="dispatch.XQ")


def _attempt(sender, campaign: dict, skeleton, emails: list[dict], claimed: dict, date: str,
             waits: dict) -> list[Outcome]:
    """Claimed emails, built and sent in one pipelined run over the thread's connection; an
    outcome each. `waits` holds this batch's retry delays, one per attempt number, so the
    retries of a batch travel together in one delayed message instead of one message each."""
    outcomes, ready, items = [], [], []
    for e in emails:
        message_id = skeleton.message_id(e["d"])
        try:
            items.append((e["to"], skeleton.build_message(
                to_name=e["n"], to_email=e["to"], subject=e["s"], html=e["h"], text=e["t"],
                message_id=message_id, unsubscribe_url=e["u"], date=date)))
            ready.append((e, message_id))
        except (ValueError, TypeError, UnicodeError) as exc:
            outcomes.append(Outcome(e, claimed[e["d"]][0], "failed", f"the message could not be built: {exc}"))
    results = sender.send_many(campaign["from_email"], items) if items else []
    for (e, message_id), result in zip(ready, results):
        outcomes.append(_outcome(campaign, e, *claimed[e["d"]], message_id, result, waits))
    return outcomes


def _outcome(campaign: dict, e: dict, attempt: int, round_attempt: int, message_id: str, result,
             waits: dict) -> Outcome:
    """A send result as the outcome the design asks for (see the module docstring)."""
    if result.__class__ is str:
        return Outcome(e, attempt, "sent", result, message_id)
    if result.deferred:
        wait = waits.setdefault("deferred", int(result.retry_after * 1000) + random.randint(0, 1000))
        return Outcome(e, attempt, "retry", result.reply, wait_ms=wait, not_tried=True)
    if result.permanent:
        return Outcome(e, attempt, "failed", result.reply, suppress=is_unknown_user(result))
    if round_attempt >= campaign["max_attempts"]:
        return Outcome(e, attempt, "dead", result.reply)
    wait = waits.setdefault(round_attempt, retry_delay_ms(round_attempt))
    return Outcome(e, attempt, "retry", result.reply, wait_ms=wait)


def _running(campaign_id: int) -> bool:
    """Between emails: a database that went away does not stop what is already claimed
    (the outcomes wait for it); only a pause or stop does."""
    try:
        return state.is_running(campaign_id)
    except psycopg.OperationalError:
        return True


def _publish_after_commit(campaign_id: int, outcomes: list[Outcome], actor) -> None:
    """Retries go to the delay queue, one message per wait; dead emails get their copy in
    dispatch.XQ. Both only after the outcomes are committed."""
    waits = defaultdict(list)
    for o in outcomes:
        if o.status == "retry":
            waits[o.wait_ms].append(o.email)
    for wait, emails in waits.items():
        actor.send_with_options(args=(campaign_id, emails), delay=wait)
    for o in outcomes:
        if o.status == "dead":
            try:
                broker.enqueue(_dead_message(campaign_id, o))
            except dramatiq.errors.ConnectionClosed as exc:  # the dead letter is in PostgreSQL already
                log.warning("dead letter of delivery %s not copied to dispatch.XQ: %s", o.email["d"], exc)


def send_batch(campaign_id: int, emails: list[dict], actor) -> None:
    if not state.is_running(campaign_id):
        if state.campaign_status(campaign_id) == "completed":
            _drop_duplicates(campaign_id, emails)  # nothing of it is open: a duplicate or a stray copy
        return  # paused or stopped: still open in PostgreSQL; resume re-enqueues
    campaign = cache.campaign(campaign_id)
    skeleton = cache.skeleton(campaign_id)
    batch = _Batch(campaign_id)
    sender = smtp_pool().sender()
    date = formatdate()
    size = max(1, Config.DISPATCH_CLAIM_CHUNK)
    # A rate-limited server sends slowly: one email per run keeps a pause prompt there.
    step = 1 if any(state.server.rate for state in smtp_pool().states) else size
    outcomes: list[Outcome] = []
    untried: list[dict] = []  # claimed by this batch, not attempted yet
    waits: dict = {}
    try:
        for start in range(0, len(emails), size):
            if not _running(campaign_id) or batch.stopped:
                break  # paused or stopped: the rest was never claimed and stays open
            claimed = batch.commit(outcomes, [], emails[start:start + size], smtp_pool().drain_events())
            done, outcomes = outcomes, []
            untried = [e for e in emails[start:start + size] if e["d"] in claimed]
            _publish_after_commit(campaign_id, done, actor)
            recorded = time.monotonic()
            while untried and _running(campaign_id):
                part, untried = untried[:step], untried[step:]
                outcomes += _attempt(sender, campaign, skeleton, part, claimed, date, waits)
                if untried and time.monotonic() - recorded > RECORD_EVERY:  # a slow server: keep the truth fresh
                    batch.commit(outcomes, [], [], smtp_pool().drain_events())
                    done, outcomes = outcomes, []
                    _publish_after_commit(campaign_id, done, actor)
                    recorded = time.monotonic()
            if untried:
                break  # paused mid-chunk: hand the rest back untouched
    except BaseException:
        # Record what we know and hand back what was never tried, then let Dramatiq retry
        # the message: its open emails are claimed again, the others dropped as done.
        _settle(batch, campaign_id, outcomes, untried, actor)
        raise
    finally:
        sender.release()
    _settle(batch, campaign_id, outcomes, untried, actor)
    try:
        with pool().connection() as conn:
            complete_if_done(conn, campaign_id)
    except psycopg.OperationalError as exc:  # the scheduler completes it later
        log.warning("campaign %s not checked for completion: %s", campaign_id, exc)


def _drop_duplicates(campaign_id: int, emails: list[dict]) -> None:
    message = _message_id()
    with pool().connection() as conn:
        journal.append(conn, [Event("delivery.duplicate_dropped", campaign_id, e["d"], e["to"], source="dispatch",
                                    detail={"message": message, "campaign": "completed"},
                                    key=f"dup.{message}.{e['d']}" if message else None) for e in emails])


def _settle(batch: _Batch, campaign_id: int, outcomes: list[Outcome], untried: list[dict], actor) -> None:
    if outcomes or untried or batch.claimed_any:
        batch.commit(outcomes, [e["d"] for e in untried], [], smtp_pool().drain_events(), release=True)
        _publish_after_commit(campaign_id, outcomes, actor)
    outcomes.clear()
    untried.clear()


@dramatiq.actor(queue_name="dispatch", priority=10, max_retries=20, min_backoff=1000, max_backoff=60_000)
def dispatch(campaign_id: int, emails: list[Email]):
    send_batch(campaign_id, emails, dispatch)


@dramatiq.actor(queue_name="urgent", priority=0, max_retries=20, min_backoff=1000, max_backoff=60_000)
def dispatch_urgent(campaign_id: int, emails: list[Email]):
    """Single sends (a replayed dead letter, a resent unknown delivery): their own queue, and
    the first pick of a worker thread, so they never wait behind a campaign's bulk work."""
    send_batch(campaign_id, emails, dispatch_urgent)
