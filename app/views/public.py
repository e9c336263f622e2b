"""Public pages reached from an email: unsubscribe (with RFC 8058 one-click) and health."""
from flask import Blueprint, render_template, request

from .. import csrf
from ..config import Config
from ..db import pool, q
from ..forms import ActionForm
from ..services import journal
from ..services.journal import Event
from ..tokens import UNSUBSCRIBE, BadToken, verify

bp = Blueprint("public", __name__)


def _unsubscribe(contact_id: int, campaign_id: int | None, how: str) -> None:
    with pool().connection() as conn:
        row = conn.execute(q.contact_unsubscribe, {"id": contact_id}).fetchone()
        if row:
            journal.append(conn, [Event("contact.unsubscribed", campaign_id, email=row["email"], source="recipient",
                                        detail={"how": how}, key=f"unsub.{contact_id}")])


@bp.route("/u/<token>", methods=["GET", "POST"])
@csrf.exempt  # one-click POSTs come from mail clients; the signed token is the authority
def unsubscribe(token):
    try:
        contact_id, campaign_id = verify(UNSUBSCRIBE, token, Config.UNSUBSCRIBE_TOKEN_MAX_AGE)
    except (BadToken, ValueError, TypeError) as exc:
        return render_template("unsubscribe.html", error=str(exc) if isinstance(exc, BadToken) else "this link is not valid"), 400
    if request.method == "POST":
        one_click = request.form.get("List-Unsubscribe") == "One-Click"
        if not one_click and not ActionForm().validate_on_submit():
            return render_template("unsubscribe.html", error="the form expired: open the link again"), 400
        _unsubscribe(contact_id, campaign_id, "one-click" if one_click else "page")
        return render_template("unsubscribe.html", done=True)
    return render_template("unsubscribe.html", form=ActionForm())


@bp.route("/health")
def health():
    with pool().connection() as conn:
        conn.execute("SELECT 1")
    return {"ok": True}
