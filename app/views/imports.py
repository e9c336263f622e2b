"""The import pages: upload, map the columns, watch the progress, read the report.

A blueprint nested in the contacts one (its endpoints are contacts.imports.*).
"""
import csv
import io

from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template, request,
                   stream_with_context, url_for)
from psycopg import errors
from werkzeug.exceptions import RequestEntityTooLarge

from ..contact_forms import ImportMapForm, ImportUploadForm
from ..db import fetchall, fetchone, pool, q
from ..errors import size_label
from ..forms import ActionForm, options
from ..services import importer
from ..services.import_rows import Mapping, MappingError, guess_mapping
from ..services.sheets import DELIMITERS, ENCODINGS, FileRefused, spreadsheet_safe

bp = Blueprint("imports", __name__)
BIGINT_MAX = 2**63 - 1
# A multipart body carries a few headers and the form's small fields besides the file.
FORM_OVERHEAD = 64 * 1024


def _limit() -> int:
    return current_app.config["IMPORT_MAX_BYTES"]


def _too_large_message() -> str:
    return f"The file is larger than the import limit of {size_label(_limit())}: nothing was read."


@bp.url_value_preprocessor
def _size_limit(endpoint, values):
    """Runs before any before_request hook, so before anything reads the body: a declared
    size over the import limit is refused unread, and the app-wide upload limit is lifted to
    the import's own for this one request."""
    if endpoint == "contacts.imports.upload" and request.method == "POST":
        if (request.content_length or 0) > _limit() + FORM_OVERHEAD:
            raise RequestEntityTooLarge(_too_large_message())
        request.max_content_length = _limit() + FORM_OVERHEAD


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc):
    return render_template("import_upload.html", form=ImportUploadForm(formdata=None), recent=fetchall(q.import_recent, {"limit": 20}),
                           error=_too_large_message(), limit=size_label(_limit())), 413


def _get(import_id: int) -> dict:
    row = fetchone(q.import_get, {"id": import_id}) if import_id <= BIGINT_MAX else None
    if row is None:
        abort(404)
    return row


@bp.route("/contacts/import", methods=["GET", "POST"])
def upload():
    form, error = ImportUploadForm(), None
    if form.validate_on_submit():
        try:
            with importer.spool(form.file.data.stream, form.file.data.filename, _limit()) as upload:
                import_id = importer.create(upload, form.encoding.data or None)
            return redirect(url_for(".show", import_id=import_id))
        except FileRefused as exc:
            error = f"This file cannot be imported: {exc}."
    elif request.method == "POST":
        error = "; ".join(e for errs in form.errors.values() for e in errs)
    return render_template("import_upload.html", form=form, recent=fetchall(q.import_recent, {"limit": 20}),
                           error=error, limit=size_label(_limit())), 400 if error else 200


def _reading_options(imp: dict, source) -> tuple:
    """Encoding, delimiter and header flag: the page's choice when valid, else the stored one."""
    encoding = source.get("encoding") if source.get("encoding") in ENCODINGS else imp["encoding"]
    delimiter = source.get("delimiter") if source.get("delimiter") in DELIMITERS else imp["delimiter"]
    header = source.get("has_header")
    has_header = imp["has_header"] if header not in ("0", "1") else header == "1"
    return encoding, delimiter, has_header


@bp.route("/contacts/import/<int:import_id>")
def show(import_id):
    imp = _get(import_id)
    if imp["status"] in ("queued", "running", "done"):
        return render_template("import_status.html", imp=imp, action=ActionForm())
    return _mapping_page(imp, *_reading_options(imp, request.args))


def _mapping_page(imp, encoding, delimiter, has_header, form=None, error=None, code=200):
    try:
        preview = importer.load_preview(imp, encoding, delimiter, has_header)
    except FileRefused as exc:
        return render_template("import_map.html", imp=imp, preview=None, form=None, encoding=encoding,
                               delimiter=delimiter, has_header=has_header, error=f"This file cannot be imported: {exc}.",
                               encodings=ENCODINGS, delimiters=DELIMITERS), 400
    if form is None or len(form.columns) != len(preview.header):  # a first visit, or other reading options
        guess = guess_mapping(preview.header, preview.rows)
        columns = [{"role": c["role"], "key": c["key"], "kind": c["type"]} for c in guess.columns]
        form = ImportMapForm(formdata=None, data={"columns": columns, "tag_separator": guess.tag_separator,
                                   "encoding": encoding or "", "delimiter": delimiter or "",
                                   "has_header": "1" if has_header else "0"})
    form.lists.choices = options((r["id"], f"{r['name']} ({r['members']})") for r in fetchall(q.list_all))
    return render_template("import_map.html", imp=imp, preview=preview, form=form, encoding=encoding,
                           delimiter=delimiter, has_header=has_header, error=error,
                           encodings=ENCODINGS, delimiters=DELIMITERS), code


@bp.route("/contacts/import/<int:import_id>", methods=["POST"])
def start(import_id):
    imp = _get(import_id)
    if imp["status"] not in ("uploaded", "failed"):
        flash("This import has started already.", "error")
        return redirect(url_for(".show", import_id=import_id))
    encoding, delimiter, has_header = _reading_options(imp, request.form)
    form = ImportMapForm()
    form.lists.choices = options((r["id"], r["name"]) for r in fetchall(q.list_all))
    if not form.validate_on_submit():
        return _mapping_page(imp, encoding, delimiter, has_header, form, "Some choices are not valid: see below.", 400)
    try:
        mapping = Mapping.from_json({
            "columns": [{"role": c.form.role.data, "key": (c.form.key.data or "").strip(), "type": c.form.kind.data}
                        for c in form.columns],
            "on_existing": form.on_existing.data, "lists": list(form.lists.data or []),
            "resubscribe": form.resubscribe.data, "tag_separator": form.tag_separator.data})
        width = len(importer.load_preview(imp, encoding, delimiter, has_header).header)
        if len(mapping.columns) != width:
            raise MappingError(f"the file has {width} columns but {len(mapping.columns)} were mapped: reload the page")
        if form.new_list.data and form.new_list.data.strip():
            mapping.lists.append(_new_list(form.new_list.data.strip()))
    except (MappingError, FileRefused) as exc:
        return _mapping_page(imp, encoding, delimiter, has_header, form, f"Cannot start the import: {exc}.", 400)
    importer.queue(import_id, mapping, encoding, delimiter, has_header)
    return redirect(url_for(".show", import_id=import_id))


def _new_list(name: str) -> int:
    with pool().connection() as conn:
        try:
            row = conn.execute(q.list_insert, {"name": name, "description": ""}).fetchone()
        except errors.CheckViolation:
            raise MappingError("a list name has 1 to 200 characters") from None
        row = row or conn.execute(q.list_by_name, {"name": name}).fetchone()
    return row["id"]


@bp.route("/contacts/import/<int:import_id>/requeue", methods=["POST"])
def requeue(import_id):
    """For an import no worker picks up (its message purged from the queue, say): send it
    again. Safe at any time: a running import holds a lock and a finished one is skipped."""
    imp = _get(import_id)
    if ActionForm().validate_on_submit() and importer.requeue(imp):
        flash("Queued again.", "ok")
    return redirect(url_for(".show", import_id=import_id))


@bp.route("/api/imports/<int:import_id>")
def progress(import_id):
    imp = fetchone(q.import_get, {"id": import_id}) if import_id <= BIGINT_MAX else None
    if imp is None:
        return {"error": "no such import"}, 404
    return {k: imp[k] for k in ("status", "phase", "progress", "rows_read", "inserted", "updated", "skipped",
                                "rejected", "duplicates", "error")}


@bp.route("/contacts/import/<int:import_id>/rejects.csv")
def rejects(import_id):
    imp = _get(import_id)

    def lines():
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["line", "reason", "the row as it was in the file"])
        after = 0
        while True:
            page = fetchall(q.import_rejects_page, {"import_id": import_id, "after": after, "limit": 5000})
            if not page:
                return
            for r in page:
                writer.writerow([r["line"], spreadsheet_safe(r["reason"]),
                                 *(spreadsheet_safe(c) for c in r["cells"])])
            after = page[-1]["line"]
            yield out.getvalue()
            out.seek(0)
            out.truncate()

    return Response(stream_with_context(lines()), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="rejected-rows-{imp["id"]}.csv"'})
