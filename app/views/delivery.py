"""Dead letters (per campaign, with replay and discard) and unknown deliveries (resend or
accept as sent): the manager's say over what is sent again."""
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from ..db import fetchall, fetchone, q
from ..forms import DEAD_LETTER_VIEWS, ActionForm, DeadLetterFilterForm
from ..services import delivery
from ..services.delivery import DeliveryError

bp = Blueprint("delivery", __name__)
PAGE = 100


def _checked_post():
    if not ActionForm().validate_on_submit():
        abort(400)


def _campaign(campaign_id: int) -> dict:
    row = fetchone(q.campaign_get, {"id": campaign_id})
    if row is None:
        abort(404)
    return row


def _optional_id(name: str) -> int | None:
    value = request.args.get(name)
    if value is None:
        return None
    if not value.isdigit() or not 0 < int(value) < 2**63:
        abort(400, description=f"{name} must be a positive whole number.")
    return int(value)


@bp.route("/dead-letters")
def dead_letters():
    form = DeadLetterFilterForm(formdata=request.args)
    if not form.validate():
        problems = "; ".join(f"{form[f].label.text or f}: {', '.join(e)}" for f, e in form.errors.items())
        abort(400, description=f"The filter is not valid ({problems}).")
    campaign = _campaign(form.campaign.data) if form.campaign.data else None
    unassigned = bool(form.unassigned.data) and campaign is None
    view = form.status.data or "open"
    status = None if view == "all" else view
    params = {"campaign_id": campaign["id"] if campaign else None, "unassigned": unassigned}
    rows = fetchall(q.dead_letter_page, {**params, "status": status, "before": form.before.data, "limit": PAGE})
    counts = {r["status"]: r["n"] for r in fetchall(q.dead_letter_counts, params)}
    return render_template("dead_letters.html", rows=rows, counts=counts, campaign=campaign, form=form,
                           unassigned=unassigned, action=ActionForm(), view=view, views=DEAD_LETTER_VIEWS,
                           next_before=rows[-1]["id"] if len(rows) == PAGE else None)


def _back_to(letter: dict):
    if letter and letter["campaign_id"] is not None:
        return redirect(url_for(".dead_letters", campaign=letter["campaign_id"]))
    return redirect(url_for(".dead_letters", unassigned=1))


def _flash_report(report: dict) -> None:
    parts = []
    if report["replayed"]:
        parts.append(f"{report['replayed']} sent again")
    if report["already_done"]:
        parts.append(f"{report['already_done']} not sent because the delivery was already done")
    if report["not_replayable"]:
        parts.append(f"{report['not_replayable']} cannot be replayed (not a valid message; discard them)")
    if report["paused"]:
        parts.append("the campaign is paused or stopped: they go out when you resume it")
    flash("Replay: " + ("; ".join(parts) or "nothing to replay") + ".", "ok")


@bp.route("/dead-letters/<int:dead_letter_id>/replay", methods=["POST"])
def replay_one(dead_letter_id):
    _checked_post()
    letter = fetchone(q.dead_letter_get, {"id": dead_letter_id})
    if letter is None:
        abort(404)
    try:
        _flash_report(delivery.replay("ui", dead_letter_id=dead_letter_id))
    except DeliveryError as exc:
        flash(f"Not replayed: {exc}.", "error")
    return _back_to(letter)


@bp.route("/dead-letters/<int:dead_letter_id>/discard", methods=["POST"])
def discard(dead_letter_id):
    _checked_post()
    letter = fetchone(q.dead_letter_get, {"id": dead_letter_id})
    if letter is None:
        abort(404)
    try:
        delivery.discard("ui", dead_letter_id)
        flash("Dead letter discarded: it stays listed, marked discarded.", "ok")
    except DeliveryError as exc:
        flash(f"Not discarded: {exc}.", "error")
    return _back_to(letter)


@bp.route("/campaigns/<int:campaign_id>/dead-letters/replay", methods=["POST"])
def replay_all(campaign_id):
    _campaign(campaign_id)
    _checked_post()
    try:
        _flash_report(delivery.replay("ui", campaign_id=campaign_id))
    except DeliveryError as exc:
        flash(f"Not replayed: {exc}.", "error")
    return redirect(url_for(".dead_letters", campaign=campaign_id))


def _settle_unknown(campaign_id: int, settle, done: str, refused: str):
    """Resend or mark-as-sent for one unknown delivery (form field `delivery`) or all of them."""
    _campaign(campaign_id)
    _checked_post()
    try:
        n = settle("ui", campaign_id, _optional_id("delivery"))
        flash(f"{n} unknown {'delivery' if n == 1 else 'deliveries'} {done}.", "ok")
    except DeliveryError as exc:
        flash(f"{refused}: {exc}.", "error")
    return redirect(url_for("campaigns.show", campaign_id=campaign_id))


@bp.route("/campaigns/<int:campaign_id>/unknown/resend", methods=["POST"])
def resend_unknown(campaign_id):
    return _settle_unknown(campaign_id, delivery.resend_unknown, "queued to be sent again", "Not resent")


@bp.route("/campaigns/<int:campaign_id>/unknown/mark-sent", methods=["POST"])
def mark_unknown_sent(campaign_id):
    return _settle_unknown(campaign_id, delivery.mark_unknown_sent, "marked as sent", "Not marked")
