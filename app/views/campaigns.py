"""Campaign pages: write, attach, preview, test, send, watch."""
import hashlib

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from ..config import Config
from ..db import fetch_together, fetchall, fetchone, pool, q
from ..errors import size_label
from ..forms import ActionForm, AttachmentForm, CampaignForm, PreviewForm, TestSendForm, options
from ..render import RenderError, compile_campaign
from ..services import campaign as campaigns
from ..services import preview
from ..services import segment as segments
from ..services.campaign import CampaignError
from ..smtp import SendOutcome

bp = Blueprint("campaigns", __name__)
FIELDS = ("name", "from_name", "from_email", "reply_to", "subject", "body_html", "max_attempts")


def _get(campaign_id: int) -> dict:
    row = fetchone(q.campaign_get, {"id": campaign_id})
    if row is None:
        abort(404)
    return row


def _form(obj=None) -> CampaignForm:
    if obj and obj.get("segment_version_id"):
        obj = {**obj, "target": "segment"}
    form = CampaignForm(data=obj)
    form.list_id.choices = form.exclude_list_ids.choices = options(
        (r["id"], f"{r['name']} ({r['members']})") for r in fetchall(q.list_all))
    versions = segments.version_choices()
    form.segment_version_id.choices = options([(0, "— choose —")] + versions["segment"])
    form.exclude_segment_version_ids.choices = options(versions["segment"])
    form.merge_version_id.choices = options([(0, "— none —")] + versions["merge"])
    return form


def _values(form: CampaignForm) -> dict:
    values = {f: getattr(form, f).data for f in FIELDS}
    values["from_name"] = (values["from_name"] or "").strip()
    values["reply_to"] = values["reply_to"] or ""
    to_segment = form.target.data == "segment"
    values["list_id"] = None if to_segment else form.list_id.data
    values["segment_version_id"] = form.segment_version_id.data if to_segment else None
    values["exclude_list_ids"] = form.exclude_list_ids.data or []
    values["exclude_segment_version_ids"] = form.exclude_segment_version_ids.data or []
    values["merge_version_id"] = form.merge_version_id.data or None
    return values


@bp.route("/campaigns/new", methods=["GET", "POST"])
def new():
    form = _form()
    if form.validate_on_submit():
        row = fetchone(q.campaign_insert, _values(form))
        flash("Campaign saved as a draft.", "ok")
        return redirect(url_for(".show", campaign_id=row["id"]))
    if not form.list_id.choices and len(form.segment_version_id.choices) == 1:
        flash("Create a list or a segment first: a campaign is sent to one of them.", "error")
    return render_template("campaign_form.html", form=form, campaign=None), 400 if form.errors else 200


@bp.route("/campaigns/<int:campaign_id>/edit", methods=["GET", "POST"])
def edit(campaign_id):
    campaign = _get(campaign_id)
    form = _form(campaign if request.method == "GET" else None)
    if form.validate_on_submit():
        with pool().connection() as conn:
            updated = conn.execute(q.campaign_update, {**_values(form), "id": campaign_id}).rowcount
        if updated:
            flash("Campaign saved.", "ok")
            return redirect(url_for(".show", campaign_id=campaign_id))
        flash(f"A {campaign['status']} campaign can no longer be edited.", "error")
    return render_template("campaign_form.html", form=form, campaign=campaign), 400 if form.errors else 200


@bp.route("/campaigns/<int:campaign_id>")
def show(campaign_id):
    # The page's reads in one round trip: while a send keeps PostgreSQL busy, each round trip
    # waits its turn, and this page is what the manager watches during a send.
    campaign, count_rows, attachments, deliveries, dead_letters = fetch_together(
        (q.campaign_get, {"id": campaign_id}), (q.campaign_counts, {"id": campaign_id}),
        (q.attachment_list, {"campaign_id": campaign_id}),
        (q.delivery_list, {"campaign_id": campaign_id, "after": 0, "status": None, "limit": 50}),
        (q.dead_letter_counts, {"campaign_id": campaign_id, "unassigned": False}))
    if not campaign:
        abort(404)
    counts = campaigns.summarise_counts(count_rows)
    return render_template(
        "campaign.html", campaign=campaign[0], counts=counts, attachments=attachments, deliveries=deliveries,
        # No index finds unknown rows (it would slow every status change); the counters say
        # whether there are any, which is almost never.
        unknown=fetchall(q.delivery_list, {"campaign_id": campaign_id, "after": 0, "status": "unknown", "limit": 200})
        if counts.get("unknown") else [],
        dead_letters={r["status"]: r["n"] for r in dead_letters},
        attach_form=AttachmentForm(), preview_form=PreviewForm(), test_form=TestSendForm(), action=ActionForm(),
        max_attachment=size_label(Config.MAX_ATTACHMENT_BYTES))


@bp.route("/api/campaigns/<int:campaign_id>/stats")
def stats(campaign_id):
    row = fetchone(q.campaign_status, {"id": campaign_id})
    if row is None:
        return {"error": "no such campaign"}, 404
    return {"status": row["status"], "counts": campaigns.counts(campaign_id)}


@bp.route("/campaigns/<int:campaign_id>/attachments", methods=["POST"])
def attach(campaign_id):
    campaign = _get(campaign_id)
    form = AttachmentForm()
    if campaign["status"] not in ("draft", "scheduled"):
        flash("Attachments can only change on a draft.", "error")
    elif not form.validate_on_submit():
        flash("Choose a file to attach.", "error")
    else:
        data = form.file.data.read(Config.MAX_ATTACHMENT_BYTES + 1)
        total = fetchone(q.attachment_total_size, {"campaign_id": campaign_id})["n"]
        filename = (form.file.data.filename or "attachment").replace("\\", "/").rsplit("/", 1)[-1][:255]
        if not data:
            flash("The file is empty.", "error")
        elif len(data) + total > Config.MAX_ATTACHMENT_BYTES:
            flash(f"{filename} is not attached: attachments are limited to "
                  f"{size_label(Config.MAX_ATTACHMENT_BYTES)} per campaign in all.", "error")
        else:
            fetchone(q.attachment_insert, {
                "campaign_id": campaign_id, "filename": filename or "attachment",
                "content_type": form.file.data.mimetype or "application/octet-stream",
                "content": data, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
            flash(f"Attached {filename}.", "ok")
    return redirect(url_for(".show", campaign_id=campaign_id))


@bp.route("/campaigns/<int:campaign_id>/attachments/<int:attachment_id>/delete", methods=["POST"])
def detach(campaign_id, attachment_id):
    if ActionForm().validate_on_submit():
        with pool().connection() as conn:
            conn.execute(q.attachment_delete, {"id": attachment_id, "campaign_id": campaign_id})
    return redirect(url_for(".show", campaign_id=campaign_id))


@bp.route("/campaigns/<int:campaign_id>/preview", methods=["POST"])
def show_preview(campaign_id):
    campaign = _get(campaign_id)
    form = PreviewForm()
    rendered, error = None, None
    if form.validate_on_submit():
        try:
            rendered, _ = preview.render_for(campaign, preview.sample_row(form.contact_email.data))
        except RenderError as exc:
            error = str(exc)
    else:
        error = "Give the address of a contact to preview for."
    return render_template("preview.html", campaign=campaign, rendered=rendered, error=error), 400 if error else 200


@bp.route("/campaigns/<int:campaign_id>/dry-run", methods=["POST"])
def dry_run(campaign_id):
    """Every recipient's email rendered and built as a Send would, nothing sent or written."""
    campaign = _get(campaign_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        result, error = preview.dry_run(campaign), None
    except RenderError as exc:
        result, error = None, str(exc)
    return render_template("dry_run.html", campaign=campaign, result=result, error=error,
                           limit=Config.DRY_RUN_LIMIT), 400 if error else 200


@bp.route("/campaigns/<int:campaign_id>/test", methods=["POST"])
def test_send(campaign_id):
    campaign = _get(campaign_id)
    form = TestSendForm()
    if not form.validate_on_submit():
        for errs in form.errors.values():
            for e in errs:
                flash(f"Test not sent: {e}", "error")
        return redirect(url_for(".show", campaign_id=campaign_id))
    try:
        reply = preview.test_send(campaign, form.to.data, preview.sample_row(form.contact_email.data))
        flash(f"Test sent to {form.to.data}: the server said {reply}", "ok")
    except RenderError as exc:
        flash(f"Test not sent: {exc}", "error")
    except SendOutcome as exc:
        flash(f"Test not sent: {exc.reply}", "error")
    return redirect(url_for(".show", campaign_id=campaign_id))


@bp.route("/campaigns/<int:campaign_id>/send", methods=["POST"])
def send(campaign_id):
    campaign = _get(campaign_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        compile_campaign(campaign)  # a broken template never starts a send
        result = campaigns.start(campaign_id, source="ui", confirm_drift=bool(request.form.get("confirm_drift")))
    except (CampaignError, RenderError) as exc:
        flash(f"Not sent: {exc}", "error")
        return redirect(url_for(".show", campaign_id=campaign_id))
    if result["started"]:
        flash(f"Sending to {result['deliveries']} recipients.", "ok")
    else:
        flash(f"This campaign is already {result['status']}: nothing was sent again.", "error")
    return redirect(url_for(".show", campaign_id=campaign_id))


@bp.route("/campaigns/<int:campaign_id>/control/<action>", methods=["POST"])
def control(campaign_id, action):
    """Pause, resume, stop: the same service call the console consumer makes."""
    _get(campaign_id)
    if action not in campaigns.ACTIONS:
        abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        result = campaigns.control(campaign_id, action, source="ui")
    except CampaignError as exc:
        flash(f"Not done: {exc}.", "error")
        return redirect(url_for(".show", campaign_id=campaign_id))
    if not result["changed"]:
        flash(f"The campaign is already {result['status']}.", "ok")
    elif result["status"] == "running":
        flash("Resumed: every delivery still open is queued again.", "ok")
    else:
        left = sum(result["counts"].get(s, 0) for s in ("queued", "retry", "sending"))
        flash(f"Campaign {result['status']}: {left} emails not sent are kept as not sent.", "ok")
    return redirect(url_for(".show", campaign_id=campaign_id))
