"""Campaign lifecycle: start (materialise + enqueue), pause, resume, stop, complete.

Every transition goes through `transition`, whatever asked for it (UI, console, scheduler),
so the SQL guard and the journal see them all alike.
"""
import psycopg
from psycopg import errors
from psycopg.rows import dict_row

from ..config import Config
from ..db import fetchall, pool, q
from . import journal, procedure
from . import segment as segments
from .journal import Event
from .segment import SegmentError


class CampaignError(ValueError):
    """A request the campaign's state or content does not allow; shown to the user as is."""


class NoSuchCampaign(CampaignError):
    pass


def counts(campaign_id: int) -> dict:
    return summarise_counts(fetchall(q.campaign_counts, {"id": campaign_id}))


def summarise_counts(rows: list[dict]) -> dict:
    """campaign_counts' rows as the pages show them, with the total and what is still open."""
    c = {r["status"]: r["n"] for r in rows}
    c["total"] = sum(c.values())
    c["open"] = c.get("queued", 0) + c.get("retry", 0) + c.get("sending", 0)
    return c


def transition(conn, campaign: dict, to_status: str, source: str, detail: dict | None = None) -> None:
    """Move a locked campaign row to `to_status`; the trigger refuses an illegal move."""
    try:
        with conn.transaction():
            conn.execute(q.campaign_set_status, {"id": campaign["id"], "status": to_status})
    except errors.CheckViolation:
        raise CampaignError(f"a {campaign['status']} campaign cannot become {to_status}") from None
    journal.append(conn, [Event("campaign." + to_status, campaign["id"], source=source,
                                detail={"from": campaign["status"], **(detail or {})})])


def start(campaign_id: int, source: str = "ui", confirm_drift: bool = False) -> dict:
    """Freeze the recipients into deliveries and hand the campaign to the workers.

    Idempotent: a campaign that already started is left as it is, so pressing Send twice
    (or a scheduler and a person at once) sends nothing twice. A segment version changed in
    the database since it was saved (drift) is only sent to with `confirm_drift`.

    One statement freezes the recipient set; its first MATERIALISE_FIRST_PAGE recipients
    are committed and enqueued before the rest, staged by the same statement, is moved into
    deliveries: the first emails leave at once (migration 015).
    """
    with _connect() as conn:
        conn.execute(q.campaign_start_lock, {"id": campaign_id})
        with conn.transaction():
            campaign = conn.execute(q.campaign_lock, {"id": campaign_id}).fetchone()
            if campaign is None:
                raise CampaignError("no such campaign")
            if campaign["status"] not in ("draft", "scheduled"):
                return {"started": False, "status": campaign["status"]}
            if campaign["list_id"] is None and campaign["segment_version_id"] is None:
                raise CampaignError("choose a list or a segment to send to first")
            target = _target(conn, campaign, confirm_drift)
            first = _materialise(conn, q.campaign_materialise_first, {
                "id": campaign_id, "limit": Config.MATERIALISE_FIRST_PAGE, **target["params"]}).fetchone()
            if first["n"] == 0:
                raise CampaignError("the campaign has no recipients: the list or segment is empty, or every "
                                    "contact in it is unsubscribed, bounced, suppressed or excluded")
            transition(conn, campaign, "running", source)
            if first["staged"]:
                conn.execute(q.campaign_materialising, {"id": campaign_id, "after": first["last_contact"]})
            else:
                _journal_materialised(conn, campaign_id, source, first["n"], target["detail"])
        if not first["staged"]:
            enqueue(campaign_id)
            return {"started": True, "deliveries": first["n"]}
        enqueue(campaign_id, until=first["last_id"])
        rest = _move_rest(conn, campaign_id, source, target["detail"], first["n"], first["last_id"])
    return {"started": True, "deliveries": first["n"] + rest}


def _connect() -> psycopg.Connection:
    """A connection of its own: a start spans transactions under a session lock, which must
    not outlive it in a pooled connection."""
    return psycopg.connect(Config.DATABASE_URL, autocommit=True, row_factory=dict_row)


def _target(conn, campaign: dict, confirm_drift: bool) -> dict:
    try:
        return segments.send_target(conn, campaign, confirm_drift)
    except SegmentError as exc:
        raise CampaignError(str(exc)) from None


def _materialise(conn, query: str, params: dict):
    try:
        return conn.execute(query, params)
    except psycopg.Error as exc:
        reason = procedure.explain(exc, Config.MATERIALISE_TIMEOUT_MS)
        raise CampaignError(f"the segment could not be evaluated: it {reason}") from None


def _journal_materialised(conn, campaign_id: int, source: str, deliveries: int, detail: dict) -> None:
    journal.append(conn, [Event("campaign.materialised", campaign_id, source=source,
                                detail={"deliveries": deliveries, **detail}, key=f"c{campaign_id}.materialised")])


def _move_rest(conn, campaign_id: int, source: str, detail: dict, before: int, after_id: int,
               reread: dict | None = None) -> int:
    """Move the staged rest into deliveries (or, with `reread`, read it again) and clear the
    mark in one transaction; then the rest's own enqueue stream starts. The mark is cleared
    last: that UPDATE locks the campaign row, which the workers' claims share meanwhile."""
    with conn.transaction():
        if reread:
            segments.set_materialise_timeout(conn)
            rest = _materialise(conn, q.campaign_materialise_after, reread).rowcount
        else:
            rest = conn.execute(q.campaign_materialise_staged, {"id": campaign_id}).rowcount
        conn.execute(q.campaign_staging_clear, {"id": campaign_id})
        row = conn.execute(q.campaign_materialised, {"id": campaign_id}).fetchone()
        if row is None:
            raise CampaignError("the materialise of this campaign was finished elsewhere")
        _journal_materialised(conn, campaign_id, source, before + rest, detail)
    conn.execute(q.deliveries_analyze)
    if row["status"] == "running":
        enqueue(campaign_id, after=after_id)
        with conn.transaction():
            complete_if_done(conn, campaign_id)  # the first page may be all sent, and the rest empty
    return rest


def finish_interrupted_materialise(campaign_id: int) -> bool:
    """Move the rest of a materialise whose start died before it was in (the scheduler calls
    this). Its staged copy is the recipient set frozen at Send; only when a PostgreSQL crash
    took it (unlogged) is the rest read again, from a fresh snapshot. Skipped while a start
    of this campaign is still at work."""
    with _connect() as conn:
        if not conn.execute(q.campaign_start_try_lock, {"id": campaign_id}).fetchone()["locked"]:
            return False
        campaign = conn.execute(q.campaign_get, {"id": campaign_id}).fetchone()
        if campaign is None or campaign["materialising_after"] is None:
            return False
        detail, reread = {"resumed_after_interruption": True}, None
        if not conn.execute(q.campaign_staged, {"id": campaign_id}).fetchone()["staged"]:
            with conn.transaction():  # confirmed (or not drifted) at Send
                params = _target(conn, campaign, confirm_drift=True)["params"]
            reread = {"id": campaign_id, "after_contact": campaign["materialising_after"], **params}
            detail["staged_rest_lost"] = True
        before = conn.execute(q.campaign_delivery_total, {"id": campaign_id}).fetchone()["n"]
        # The stream starts from the campaign's first delivery: the start may have died before
        # it enqueued its first page; what was enqueued twice is dropped at the claim.
        _move_rest(conn, campaign_id, "scheduler", detail, before, 0, reread)
    return True


# What each control action makes of a campaign, and from which states (the SQL trigger
# guards the same moves; this list only gives clearer refusals).
ACTIONS = {"pause": ("paused", ("running",)),
           "resume": ("running", ("paused", "stopped")),
           "stop": ("stopped", ("running", "paused"))}


def control(campaign_id: int, action: str, source: str, detail: dict | None = None) -> dict:
    """Pause, resume or stop a campaign: the one code path for the UI, the console and the
    scheduler's purge-to-stop, journaled with its source.

    Pause and stop leave every unsent delivery open in PostgreSQL (workers put prefetched
    work back untouched); resume re-enqueues exactly the open ones.
    """
    if action not in ACTIONS:
        raise CampaignError(f"unknown action {str(action)[:40]!r}: use pause, resume or stop")
    to_status, allowed = ACTIONS[action]
    refusal = None
    with pool().connection() as conn:
        campaign = conn.execute(q.campaign_lock, {"id": campaign_id}).fetchone()
        if campaign is None:
            raise NoSuchCampaign(f"no campaign {campaign_id}")
        counts = counts_in(conn, campaign_id)
        about = {"action": action, "counts": counts, **(detail or {})}
        if campaign["status"] == to_status:
            journal.append(conn, [Event("control.noop", campaign_id, source=source,
                                        detail={**about, "status": campaign["status"]})])
            return {"changed": False, "status": to_status, "counts": counts}
        if campaign["status"] not in allowed:
            done = {"pause": "paused", "resume": "resumed", "stop": "stopped"}[action]
            refusal = f"a {campaign['status']} campaign cannot be {done}"
            journal.append(conn, [Event("control.refused", campaign_id, source=source,
                                        detail={**about, "status": campaign["status"], "reason": refusal})])
        else:
            transition(conn, campaign, to_status, source, about)
            if to_status == "running" and complete_if_done(conn, campaign_id):
                return {"changed": True, "status": "completed", "counts": counts}
    if refusal:
        raise CampaignError(refusal)
    if to_status == "running":
        enqueue(campaign_id)
    return {"changed": True, "status": to_status, "counts": counts}


def reopen(conn, campaign_id: int, source: str, reason: str) -> str:
    """A finished campaign whose dead letters or unknown deliveries are sent again runs
    again until they are done. Returns the campaign's status afterwards."""
    campaign = conn.execute(q.campaign_lock, {"id": campaign_id}).fetchone()
    if campaign is None:
        raise CampaignError(f"no campaign {campaign_id}")
    if campaign["status"] == "completed":
        transition(conn, campaign, "running", source, {"reason": reason})
        return "running"
    return campaign["status"]


def enqueue(campaign_id: int, after: int = 0, until: int | None = None) -> None:
    from consumers.prepare import enqueue_campaign  # the web app only publishes

    enqueue_campaign.send(campaign_id, after, until)


def complete_if_done(conn, campaign_id: int) -> bool:
    """Complete a running campaign with nothing open. The campaign row is locked before the
    final check, whose snapshot is then taken after any replay or resend that was reopening
    deliveries (they hold the same lock): a READ COMMITTED subquery would otherwise miss them."""
    if conn.execute(q.campaign_has_open, {"id": campaign_id}).fetchone()["open"]:
        return False
    if not conn.execute(q.campaign_lock_running, {"id": campaign_id}).fetchone():
        return False
    done = conn.execute(q.campaign_complete_if_done, {"id": campaign_id}).fetchone()
    if done:
        # No dedupe key: the guarded UPDATE completes a run only once, and a campaign reopened
        # by a replay completes again, which the journal must show.
        journal.append(conn, [Event("campaign.completed", campaign_id,
                                    detail=counts_in(conn, campaign_id))])
    return bool(done)


def counts_in(conn, campaign_id: int) -> dict:
    rows = conn.execute(q.campaign_counts, {"id": campaign_id}).fetchall()
    return {r["status"]: r["n"] for r in rows}
