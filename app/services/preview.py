"""Preview and test send: render one campaign for one contact exactly as prepare would."""
from email.utils import formatdate

from ..db import fetchall, fetchone, q
from ..mime import Attachment, Skeleton
from ..render import RenderError, compile_campaign, contact_context
from ..smtp import configured_servers, send_once
from ..tokens import unsubscribe_url
from . import merge

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
