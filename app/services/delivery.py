"""Sending again on the manager's say: dead letters (replay, discard) and unknown deliveries
(resend, or accept as sent).

Nothing here sends anything twice by itself: a dead delivery is reopened only from `dead`
and an unknown one only from `unknown`, in the same transaction that resolves the request,
and the worker's claim still has the last word. A replay of a delivery that was sent
meanwhile reopens nothing and sends nothing.
"""
from dramatiq import Message

from ..config import Config
from ..db import pool, q
from . import journal
from .campaign import CampaignError, complete_if_done, reopen
from .journal import Event

REPLAY_ALL_LIMIT = 100_000


class DeliveryError(CampaignError):
    """A request about deliveries that cannot be done; shown to the manager as is."""


def replay(source: str, *, dead_letter_id: int | None = None, campaign_id: int | None = None) -> dict:
    """Replay one dead letter, or every open one of a campaign."""
    if dead_letter_id is None and campaign_id is None:
        raise DeliveryError("say which dead letter or which campaign to replay")
    report = {"replayed": 0, "already_done": 0, "not_replayable": 0}
    emails_by_campaign: dict[int, list[dict]] = {}
    messages: list[dict] = []
    with pool().connection() as conn:
        letters = conn.execute(q.dead_letter_lock_open, {
            "ids": [dead_letter_id] if dead_letter_id is not None else None,
            "campaign_id": campaign_id, "limit": REPLAY_ALL_LIMIT}).fetchall()
        if dead_letter_id is not None and not letters:
            raise DeliveryError("this dead letter is no longer open (already replayed or discarded)")
        per_email = [d for d in letters if d["delivery_id"] is not None and d["message"]]
        reopened = {r["id"] for r in conn.execute(
            q.delivery_reopen_dead, {"ids": [d["delivery_id"] for d in per_email]})} if per_email else set()
        statuses = {}
        events, resolutions = [], {}
        for d in letters:
            if not d["message"]:
                report["not_replayable"] += 1
                continue
            if d["delivery_id"] is not None and d["delivery_id"] not in reopened:
                status = _delivery_status(conn, d["delivery_id"])
                resolutions[d["id"]] = f"nothing sent: the delivery is {status or 'gone'}"
                report["already_done"] += 1
                kind = "deadletter.replay_skipped"
            else:
                resolutions[d["id"]] = "sent again"
                report["replayed"] += 1
                kind = "deadletter.replayed"
                if d["delivery_id"] is not None:
                    emails_by_campaign.setdefault(d["campaign_id"], []).extend(d["message"]["args"][1])
                else:
                    messages.append(d["message"])
            events.append(Event(kind, d["campaign_id"], d["delivery_id"], d["email"], source=source,
                                detail={"dead_letter": d["id"], "resolution": resolutions[d["id"]]},
                                key=f"dl{d['id']}.replay"))
        for cid in emails_by_campaign:
            statuses[cid] = reopen(conn, cid, source, "dead letters replayed")
        for text in set(resolutions.values()):
            conn.execute(q.dead_letter_resolve, {"ids": [i for i, r in resolutions.items() if r == text],
                                                 "status": "replayed", "resolution": text})
        journal.append(conn, events)
    _publish_emails(emails_by_campaign, statuses)
    _publish_messages(messages)
    report["paused"] = sorted(c for c, s in statuses.items() if s != "running")
    return report


def discard(source: str, dead_letter_id: int) -> None:
    with pool().connection() as conn:
        letters = conn.execute(q.dead_letter_lock_open, {"ids": [dead_letter_id], "campaign_id": None,
                                                         "limit": 1}).fetchall()
        if not letters:
            raise DeliveryError("this dead letter is no longer open (already replayed or discarded)")
        d = letters[0]
        conn.execute(q.dead_letter_resolve, {"ids": [d["id"]], "status": "discarded",
                                             "resolution": f"discarded from the {source}"})
        journal.append(conn, [Event("deadletter.discarded", d["campaign_id"], d["delivery_id"], d["email"],
                                    source=source, detail={"dead_letter": d["id"]},
                                    key=f"dl{d['id']}.discard")])


def resend_unknown(source: str, campaign_id: int, delivery_id: int | None = None) -> int:
    """Open unknown deliveries again, on the manager's word that they did not arrive."""
    with pool().connection() as conn:
        rows = conn.execute(q.delivery_resend_unknown, {"campaign_id": campaign_id, "id": delivery_id}).fetchall()
        if not rows:
            raise DeliveryError("no unknown delivery to resend here")
        status = reopen(conn, campaign_id, source, "unknown deliveries resent")
        journal.append(conn, [Event("delivery.resend_requested", campaign_id, r["id"], r["email"], source=source,
                                    detail={"attempts": r["attempts"]}, key=f"d{r['id']}.a{r['attempts']}.resend")
                              for r in rows])
    if status == "running":
        from consumers.prepare import prepare

        ids = [r["id"] for r in rows]
        if len(ids) == 1:  # a single send goes ahead of bulk work, through the urgent queue
            message = prepare.message_with_options(args=(campaign_id, ids), kwargs={"urgent": True})
            prepare.broker.enqueue(message.copy(queue_name="urgent"))
        else:
            for i in range(0, len(ids), Config.PREPARE_BATCH):
                prepare.send(campaign_id, ids[i:i + Config.PREPARE_BATCH])
    return len(rows)


def mark_unknown_sent(source: str, campaign_id: int, delivery_id: int | None = None) -> int:
    """Accept unknown deliveries as sent, on the manager's word (say, from the server's log)."""
    with pool().connection() as conn:
        rows = conn.execute(q.delivery_mark_unknown_sent, {"campaign_id": campaign_id, "id": delivery_id}).fetchall()
        if not rows:
            raise DeliveryError("no unknown delivery to mark here")
        journal.append(conn, [Event("delivery.marked_sent", campaign_id, r["id"], r["email"], source=source,
                                    detail={"attempts": r["attempts"]}, key=f"d{r['id']}.a{r['attempts']}.marked_sent")
                              for r in rows])
        complete_if_done(conn, campaign_id)
    return len(rows)


def _delivery_status(conn, delivery_id: int) -> str | None:
    row = conn.execute(q.delivery_status, {"id": delivery_id}).fetchone()
    return row["status"] if row else None


def _publish_emails(emails_by_campaign: dict[int, list[dict]], statuses: dict[int, str]) -> None:
    from consumers.dispatch import dispatch, dispatch_urgent

    for cid, emails in emails_by_campaign.items():
        if statuses.get(cid) != "running":
            continue  # paused or stopped: the reopened deliveries go out on resume
        if len(emails) == 1:
            dispatch_urgent.send(cid, emails)
            continue
        for i in range(0, len(emails), Config.PREPARE_BATCH):
            dispatch.send(cid, emails[i:i + Config.PREPARE_BATCH])


def _publish_messages(messages: list[dict]) -> None:
    """Other dead messages (a prepare batch whose retries ran out, say) go back to their queue
    with a fresh retry budget."""
    from consumers.broker import broker

    for m in messages:
        options = {k: v for k, v in m.get("options", {}).items() if k not in ("retries", "traceback", "eta")}
        message = Message(**{**m, "options": options, "args": tuple(m["args"])})
        broker.enqueue(message.copy(queue_name=message.queue_name.removesuffix(".XQ").removesuffix(".DQ")))
