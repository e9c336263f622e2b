"""Contacts and lists pages."""
from flask import Blueprint, flash, redirect, render_template, request, url_for
from psycopg import errors

from ..db import fetchall, fetchone, pool, q
from ..forms import ContactForm, CsvUploadForm, ListForm
from ..services import contact as contacts
from ..services.contact import ContactError

bp = Blueprint("contacts", __name__)
PAGE = 100


def _list_choices():
    return [(0, "— none —")] + [(r["id"], r["name"]) for r in fetchall(q.list_all)]


@bp.route("/contacts")
def index():
    search = (request.args.get("q") or "").strip()[:320] or None
    list_id = request.args.get("list", type=int)
    after = request.args.get("after", default=0, type=int)
    rows = fetchall(q.contact_page, {"search": search, "list_id": list_id, "after": after, "limit": PAGE})
    form, upload = ContactForm(), CsvUploadForm()
    form.list_id.choices = upload.list_id.choices = _list_choices()
    return render_template("contacts.html", contacts=rows, form=form, upload=upload, search=search or "",
                           list_id=list_id, next_after=rows[-1]["id"] if len(rows) == PAGE else None)


@bp.route("/contacts", methods=["POST"])
def add():
    form = ContactForm()
    form.list_id.choices = _list_choices()
    if form.validate_on_submit():
        try:
            attributes = contacts.parse_attributes(form.attributes.data)
            with pool().connection() as conn:
                contacts.add(conn, form.email.data, (form.name.data or "").strip(), attributes,
                             form.list_id.data or None)
            flash(f"Saved {form.email.data}.", "ok")
            return redirect(url_for(".index"))
        except ContactError as exc:
            form.attributes.errors.append(str(exc))
    upload = CsvUploadForm()
    upload.list_id.choices = form.list_id.choices
    return render_template("contacts.html", contacts=fetchall(q.contact_page, {"search": None, "list_id": None, "after": 0, "limit": PAGE}),
                           form=form, upload=upload, search="", list_id=None, next_after=None), 400


@bp.route("/contacts/upload", methods=["POST"])
def upload():
    form = CsvUploadForm()
    form.list_id.choices = _list_choices()
    if not form.validate_on_submit():
        flash("Choose a CSV file to upload.", "error")
        return redirect(url_for(".index"))
    try:
        report = contacts.import_csv(form.file.data.read(), form.list_id.data or None)
    except ContactError as exc:
        flash(f"Upload refused: {exc}", "error")
        return redirect(url_for(".index"))
    flash(f"Imported: {report.inserted} new, {report.updated} updated, {len(report.rejected)} rejected.", "ok")
    for line, reason in report.rejected[:50]:
        flash(f"line {line}: {reason}", "error")
    return redirect(url_for(".index"))


@bp.route("/lists", methods=["GET", "POST"])
def lists():
    form = ListForm()
    if form.validate_on_submit():
        try:
            row = fetchone(q.list_insert, {"name": form.name.data.strip(), "description": form.description.data or ""})
        except errors.DataError as exc:
            row, form.name.errors = None, [str(exc)]
        if row:
            flash(f"List {form.name.data} created.", "ok")
            return redirect(url_for(".lists"))
        form.name.errors = list(form.name.errors) + ["a list with this name exists already"]
    return render_template("lists.html", lists=fetchall(q.list_all), form=form), 400 if form.errors else 200
