"""prepare: turn a batch of open deliveries into rendered emails for dispatch.

A batch envelope (many recipients per message) keeps Dramatiq's per-message cost off the
per-email path; each email still gets its own outcome.
"""
import dramatiq

from app.config import Config
from app.db import pool, q
from app.render import RenderError, contact_context
from app.services import journal, merge
from app.services.journal import Event
from app.tokens import unsubscribe_url

from . import cache, state
from .broker import broker  # noqa: F401  (sets the broker before actors are declared)
from .dispatch import dispatch, dispatch_urgent


@dramatiq.actor(queue_name="enqueue", max_retries=20, min_backoff=1000, max_backoff=60_000)
def enqueue_campaign(campaign_id: int, after: int = 0, until: int | None = None):
    """Publish prepare batches for the open deliveries, streaming by id, ENQUEUE_PAGES batches
    per message. The continuation (the next piece, from the last id read) is published before
    this piece's batches, so a purge of `enqueue` ends the stream with this piece: at most
    ENQUEUE_PAGES batches go out after it. No message runs for long either. `until` ends the
    stream of a first page at its last id (the rest gets its own stream once written)."""
    if not state.is_running(campaign_id):
        return
    pages, cursor = [], after
    with pool().connection() as conn:
        for _ in range(Config.ENQUEUE_PAGES):
            rows = conn.execute(q.delivery_open_page, {"campaign_id": campaign_id, "after": cursor, "until": until,
                                                       "limit": Config.PREPARE_BATCH}).fetchall()
            if not rows:
                break
            pages.append(rows)
            cursor = rows[-1]["id"]
    if len(pages) == Config.ENQUEUE_PAGES:  # there may be more
        enqueue_campaign.send(campaign_id, cursor, until)
    for rows in pages:
        if not state.is_running(campaign_id):
            return
        due = [r["id"] for r in rows if not r["wait_ms"]]
        if due:
            prepare.send(campaign_id, due)
        waiting = [r for r in rows if r["wait_ms"]]
        if waiting:  # retries keep what is left of their backoff
            prepare.send_with_options(args=(campaign_id, [r["id"] for r in waiting]),
                                      delay=max(r["wait_ms"] for r in waiting))


@dramatiq.actor(queue_name="prepare", max_retries=20, min_backoff=1000, max_backoff=60_000)
def prepare(campaign_id: int, delivery_ids: list[int], urgent: bool = False):
    """`urgent` marks a single send (a resent delivery): it came through the urgent queue
    and its email goes on through it, ahead of bulk work."""
    if not state.is_running(campaign_id):
        return  # the rows stay open in PostgreSQL; resume re-enqueues them
    compiled = cache.compiled(campaign_id)
    meta = {"id": campaign_id, "name": cache.campaign(campaign_id)["name"]}
    with pool().connection() as conn:
        rows = conn.execute(q.delivery_render_batch, {"ids": delivery_ids}).fetchall()
    gone = [(row, "the contact was deleted before this email was sent") for row in rows if row["contact_id"] is None]
    if gone:
        _fail(campaign_id, gone)
        rows = [row for row in rows if row["contact_id"] is not None]
        if not rows:
            return
    try:  # one read-only call of the campaign's merge procedure for the whole batch
        data = merge.for_campaign(cache.campaign(campaign_id), [r["contact_id"] for r in rows])
    except merge.MergeError as exc:
        _fail(campaign_id, [(row, str(exc)) for row in rows])
        return
    emails, failed = [], []
    for row in rows:
        url = unsubscribe_url(row["contact_id"], campaign_id)
        context = {"contact": contact_context(row), "data": data.get(row["contact_id"], {}), "campaign": meta,
                   "unsubscribe_url": url}
        try:
            r = compiled.render(context)
        except RenderError as exc:
            failed.append((row, str(exc)))
            continue
        emails.append({"d": row["id"], "to": row["email"], "n": row["name"],
                       "s": r.subject, "h": r.html, "t": r.text, "u": url})
    if failed:
        _fail(campaign_id, failed)
    if emails:
        (dispatch_urgent if urgent else dispatch).send(campaign_id, emails)


def _fail(campaign_id: int, failed: list):
    from app.services.campaign import complete_if_done

    with pool().connection() as conn:
        conn.execute(q.delivery_fail_open, {"ids": [r["id"] for r, _ in failed],
                                            "errors": [e for _, e in failed]})
        journal.append(conn, [
            Event("delivery.failed", campaign_id, r["id"], r["email"], detail={"error": e, "stage": "render"},
                  key=f"d{r['id']}.render_failed") for r, e in failed])
        conn.commit()
        complete_if_done(conn, campaign_id)
