"""Segment pages: the rule builder with live preview, versions with diffs and drift, DBA
registration, export to sql/procedures/, and static lists made from a segment.

Also the `flask --app app segments ...` commands DBAs use (register, refresh, export).
"""
import difflib
import json
import sys

import click
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from ..db import fetchall, fetchone, q
from ..forms import ActionForm, SaveListForm, SegmentForm
from ..services import procedure, segment
from ..services.procedure import ProcedureError
from ..services.segment import SegmentError

bp = Blueprint("segments", __name__)
MAX_RULES_JSON = 1_000_000


def _procedure(procedure_id: int) -> dict:
    row = fetchone(q.procedure_get, {"id": procedure_id})
    if row is None:
        abort(404)
    return row


def _rules_from(text: str):
    """The builder's JSON, or a SegmentError that says what is wrong with it."""
    if len(text or "") > MAX_RULES_JSON:
        raise SegmentError("the rule is too large")
    try:
        return json.loads(text or "null")
    except (ValueError, RecursionError):
        raise SegmentError("the rule did not arrive as JSON: reload the page") from None


def _flash_report(report: procedure.Report) -> None:
    for fn in report.registered:
        flash(f"Registered {fn} (author: DBA).", "ok")
    for what in report.unchanged:
        flash(f"{what}: already in the database, unchanged.", "ok")
    for what, reason in report.refused:
        flash(f"Refused {what}: {reason}", "error")
    for what, reason in report.still_refused:
        flash(f"Still refused (unchanged since): {what}: {reason}", "error")
    if not (report.registered or report.refused or report.unchanged):
        flash("Nothing new in the segments schema.", "ok")


@bp.app_context_processor
def _campaign_helpers():
    """campaign.html asks for the segment target only when it shows a campaign."""
    return {"segment_target": segment.campaign_target}


@bp.route("/segments")
def index():
    return render_template(
        "segments.html", segments=fetchall(q.procedure_list, {"kind": "segment"}),
        merges=fetchall(q.procedure_list, {"kind": "merge"}), refusals=fetchall(q.procedure_refusal_list),
        action=ActionForm())


@bp.route("/segments/refresh", methods=["POST"])
def refresh():
    if not ActionForm().validate_on_submit():
        abort(400)
    _flash_report(procedure.refresh())
    return redirect(url_for(".index"))


@bp.route("/segments/new", methods=["GET", "POST"])
def new():
    form = SegmentForm()
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                row = segment.create(form.name.data or "", _rules_from(form.rules.data))
            except SegmentError as exc:
                form.rules.errors = [str(exc)]
            else:
                flash(f"Saved {row['fn_name']}: {row['matched']} contacts match now.", "ok")
                return redirect(url_for(".show", procedure_id=row["procedure_id"]))
    return render_template("segments_new.html", form=form, rules_json=form.rules.data or "null"), \
        400 if request.method == "POST" else 200


def _diffs(versions: list[dict]) -> dict:
    """Unified diff of each version's source against the previous version's."""
    out = {}
    for prev, cur in zip(versions, versions[1:]):
        out[cur["id"]] = list(difflib.unified_diff(prev["source"].splitlines(), cur["source"].splitlines(),
                                                   f"v{prev['version']}", f"v{cur['version']}", lineterm=""))
    return out


@bp.route("/segments/<int:procedure_id>")
def show(procedure_id, form=None, status=200):
    proc = _procedure(procedure_id)
    versions = procedure.versions(procedure_id)
    latest_rules = fetchone(q.segment_latest_rules, {"procedure_id": procedure_id})
    form = form or SegmentForm()
    rules_json = form.rules.data or json.dumps(latest_rules["rules"] if latest_rules else None)
    return render_template(
        "segments_show.html", proc=proc, versions=list(reversed(versions)), diffs=_diffs(versions),
        form=form, rules_json=rules_json, list_form=SaveListForm(), action=ActionForm(),
        static_lists=segment.lists_of(procedure_id) if proc["kind"] == "segment" else []), status


@bp.route("/segments/<int:procedure_id>/versions", methods=["POST"])
def save_version(procedure_id):
    proc = _procedure(procedure_id)
    form = SegmentForm()
    if proc["kind"] != "segment":
        abort(404)
    if form.validate_on_submit():
        try:
            row = segment.save_version(procedure_id, _rules_from(form.rules.data))
        except SegmentError as exc:
            form.rules.errors = [str(exc)]
        else:
            flash(f"Saved {row['fn_name']}: {row['matched']} contacts match now.", "ok")
            return redirect(url_for(".show", procedure_id=procedure_id))
    return show(procedure_id, form=form, status=400)


@bp.route("/segments/versions/<int:version_id>/export", methods=["POST"])
def export(version_id):
    if not ActionForm().validate_on_submit():
        abort(400)
    v = procedure.version(version_id)
    if v is None:
        abort(404)
    try:
        path = procedure.export(version_id)
        flash(f"Exported {v['fn_name']} to {procedure.display_path(path)}.", "ok")
    except (ProcedureError, OSError) as exc:
        flash(f"Not exported: {exc}", "error")
    return redirect(url_for(".show", procedure_id=v["procedure_id"]))


@bp.route("/segments/<int:procedure_id>/lists", methods=["POST"])
def save_as_list(procedure_id):
    _procedure(procedure_id)
    form = SaveListForm()
    if not form.validate_on_submit():
        flash("Give the list a name (up to 200 characters).", "error")
    else:
        try:
            r = segment.save_as_list(procedure_id, form.list_name.data)
            flash(f"List {form.list_name.data.strip()} made from v{r['version']}: {r['members']} members.", "ok")
        except SegmentError as exc:
            flash(f"Not saved as a list: {exc}", "error")
    return redirect(url_for(".show", procedure_id=procedure_id))


@bp.route("/segments/lists/<int:list_id>/refresh", methods=["POST"])
def refresh_list(list_id):
    if not ActionForm().validate_on_submit():
        abort(400)
    link = fetchone(q.segment_list_get, {"list_id": list_id})
    if link is None:
        abort(404)
    try:
        r = segment.refresh_list(list_id)
        flash(f"List {r['name']} refreshed from v{r['version']}: {r['members']} members "
              f"({r['added']} added, {r['removed']} removed).", "ok")
    except SegmentError as exc:
        flash(f"Not refreshed: {exc}", "error")
    return redirect(url_for(".show", procedure_id=link["procedure_id"]))


# --- the builder's JSON endpoints ---------------------------------------------------------------

@bp.route("/api/segments/vocabulary")
def vocabulary():
    return segment.vocabulary()


@bp.route("/api/segments/preview", methods=["POST"])
def preview():
    """{rules, mode: "estimate" | "exact"}: the estimate first (instant), then the exact figures."""
    try:
        body = _rules_from(request.get_data(as_text=True))
    except SegmentError:
        body = None
    if not isinstance(body, dict):
        return {"error": "send a JSON object with the rules"}, 400
    try:
        if body.get("mode") == "estimate":
            return segment.estimate(body.get("rules"))
        result = segment.preview(body.get("rules"))
    except SegmentError as exc:
        return {"error": str(exc)}, 400
    result["sample"] = [{"id": r["id"], "email": r["email"], "name": r["name"], "status": r["status"]}
                        for r in result["sample"]]
    return result


# --- flask --app app segments ... ---------------------------------------------------------------

def _echo_report(report: procedure.Report) -> None:
    for fn in report.registered:
        click.echo(f"registered {fn}")
    for what in report.unchanged:
        click.echo(f"unchanged  {what}")
    for what, reason in report.refused:
        click.echo(f"refused    {what}: {reason}", err=True)
    for what, reason in report.still_refused:
        click.echo(f"still refused (unchanged) {what}: {reason}", err=True)
    if not (report.registered or report.refused or report.unchanged):
        click.echo("nothing new")
    if report.refused:
        sys.exit(1)


@bp.cli.command("register")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Directory of <segment|merge>_<slug>_v<N>.sql files (default sql/procedures).")
def register_cmd(directory):
    """Create sql/procedures/*.sql functions, then register every new contract function."""
    _echo_report(procedure.register_files(directory))


@bp.cli.command("refresh")
def refresh_cmd():
    """Register contract functions DBAs created in the segments schema (validated first)."""
    _echo_report(procedure.refresh())


@bp.cli.command("export")
@click.argument("fn_names", nargs=-1)
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None)
def export_cmd(fn_names, directory):
    """Write recorded versions (by function name, or all) to sql/procedures/<name>.sql."""
    rows = fetchall(q.procedure_version_choices, {"kind": "segment"}) + fetchall(q.procedure_version_choices,
                                                                               {"kind": "merge"})
    chosen = [r for r in rows if not fn_names or r["fn_name"] in fn_names]
    missing = set(fn_names) - {r["fn_name"] for r in chosen}
    for r in chosen:
        click.echo(f"wrote {procedure.export(r['id'], directory)}")
    if missing:
        click.echo(f"no recorded version named {', '.join(sorted(missing))}", err=True)
        sys.exit(1)
