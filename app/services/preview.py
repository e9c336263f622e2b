"""Preview, test send and dry run: render a campaign exactly as prepare would, for one
contact or for everyone it would reach, without sending to them."""
from collections import defaultdict
from email.utils import formatdate

import psycopg

from ..config import Config
from ..db import fetchall, fetchone, pool, q
from ..mime import Attachment, Skeleton
from ..render import RenderError, compile_campaign, contact_context
from ..smtp import configured_servers, send_once
from ..tokens import unsubscribe_url
from . import merge, procedure
from . import segment as segments
from .address import InvalidAddress, normalise

SAMPLE = {"contact_id": 0, "email": "someone@example.com", "name": "Sample Contact",
          "attributes": {}, "tags": [], "status": "subscribed"}


def sample_row(contact_email: str | None) -> dict:
    if not contact_email:
        return SAMPLE
    row = fetchone(q.contact_by_email, {"email": contact_email.strip()[:320]})
    if row is None:
        raise RenderError(f"no contact with the address {contact_email}")
    return {**row, "contact_id": row["id"]}


def render_for(campaign: dict, row: dict):
    url = unsubscribe_url(row["contact_id"], campaign["id"])
    try:
        data = merge.for_campaign(campaign, [row["contact_id"]]).get(row["contact_id"], {})
    except merge.MergeError as exc:
        raise RenderError(str(exc)) from None
    context = {"contact": contact_context(row), "data": data,
               "campaign": {"id": campaign["id"], "name": campaign["name"]}, "unsubscribe_url": url}
    return compile_campaign(campaign).render(context), url


def test_send(campaign: dict, to: str, row: dict) -> str:
    """Send one rendered email now; returns the server's reply or raises SendOutcome/RenderError."""
    rendered, url = render_for(campaign, row)
    files = [Attachment(r["filename"], r["content_type"], bytes(r["content"]))
             for r in fetchall(q.attachment_contents, {"campaign_id": campaign["id"]})]
    skeleton = Skeleton.build(campaign, files)
    message = skeleton.build_message(
        to_name=row["name"], to_email=to, subject="[TEST] " + rendered.subject, html=rendered.html,
        text=rendered.text, message_id=skeleton.message_id("test"), unsubscribe_url=url, date=formatdate())
    # Sent from the request itself, outside the queues: a test send never waits behind bulk
    # work, and fails over between the configured servers like the workers do.
    return send_once(configured_servers(), campaign["from_email"], to, message)


def dry_run(campaign: dict) -> dict:
    """Render and build the email of every recipient the campaign would reach now (the first
    DRY_RUN_LIMIT of them), as prepare and dispatch would, and say which would fail and why.
    Nothing is written: no deliveries, no journal, the campaign stays as it is."""
    if campaign["list_id"] is None and campaign["segment_version_id"] is None:
        raise RenderError("choose a list or a segment to send to first")
    compiled = compile_campaign(campaign)
    with pool().connection() as conn:
        try:
            target = segments.send_target(conn, campaign, confirm_drift=True)
            total = conn.execute(q.campaign_recipient_count, target["params"]).fetchone()["n"]
            rows = conn.execute(q.campaign_recipient_rows, {**target["params"],
                                                            "limit": Config.DRY_RUN_LIMIT}).fetchall()
        except segments.SegmentError as exc:
            raise RenderError(str(exc)) from None
        except psycopg.Error as exc:
            reason = procedure.explain(exc, Config.MATERIALISE_TIMEOUT_MS)
            raise RenderError(f"the segment could not be evaluated: it {reason}") from None
        finally:
            conn.rollback()  # send_target notes the checksum a Send would use: not this time
    skeleton = Skeleton.build(campaign, [])
    meta = {"id": campaign["id"], "name": campaign["name"]}
    failures: dict[str, list[str]] = defaultdict(list)
    for start in range(0, len(rows), Config.PREPARE_BATCH):
        batch = rows[start:start + Config.PREPARE_BATCH]
        try:
            data = merge.for_campaign(campaign, [r["contact_id"] for r in batch])
        except merge.MergeError as exc:
            failures[str(exc)] += [r["email"] for r in batch]
            continue
        for row in batch:
            reason = _dry_run_one(compiled, skeleton, meta, row, data.get(row["contact_id"], {}))
            if reason:
                failures[reason].append(row["email"])
    failed = sum(len(v) for v in failures.values())
    return {"recipients": total, "checked": len(rows), "ok": len(rows) - failed,
            "failures": sorted(((reason, len(v), v[:3]) for reason, v in failures.items()), key=lambda f: -f[1]),
            "drift": target["detail"].get("drift_confirmed", [])}


def _dry_run_one(compiled, skeleton: Skeleton, meta: dict, row: dict, data: dict) -> str | None:
    """Why this recipient's email would fail, or None."""
    try:
        normalise(row["email"])
    except InvalidAddress as exc:
        return f"the address is not valid: {exc}"
    url = unsubscribe_url(row["contact_id"], meta["id"])
    try:
        r = compiled.render({"contact": contact_context(row), "data": data, "campaign": meta, "unsubscribe_url": url})
        skeleton.build_message(to_name=row["name"], to_email=row["email"], subject=r.subject, html=r.html,
                               text=r.text, message_id=skeleton.message_id("dry-run"), unsubscribe_url=url)
    except RenderError as exc:
        return str(exc)
    except (ValueError, TypeError, UnicodeError) as exc:
        return f"the message could not be built: {exc}"
    return None
