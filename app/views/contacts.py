"""Contacts and lists pages: search and filter, edit one, bulk actions, export, erasure, and
the one-step CSV upload. The import pages are the nested blueprint in views/imports.py."""
import json

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, stream_with_context, url_for
from psycopg import errors
from psycopg.types.json import Jsonb

from ..config import Config
from ..contact_forms import BULK_ACTIONS, BulkForm, ContactEditForm, EraseForm
from ..db import fetchall, fetchone, pool, q
from ..forms import ContactForm, CsvUploadForm, ListForm, options
from ..services import contact as contacts
from ..services import importer
from ..services.contact import ContactError, Filter
from ..services.import_rows import MappingError
from ..services.sheets import FileRefused
from . import imports

bp = Blueprint("contacts", __name__)
bp.register_blueprint(imports.bp)


def _list_choices():
    return options([(0, "— none —")] + [(r["id"], r["name"]) for r in fetchall(q.list_all)])


def _index_page(form=None, code=200):
    f = Filter.from_args(request.args)
    before, after = request.args.get("before", type=int), request.args.get("after", type=int)
    before = before if before and 0 < before <= contacts.BIGINT_MAX else None
    after = after if after is not None and 0 <= after <= contacts.BIGINT_MAX else None
    rows, more = contacts.page(f, before, after)
    lists = fetchall(q.list_all)
    form = form or ContactForm()
    upload, bulk = CsvUploadForm(), BulkForm()
    form.list_id.choices = upload.list_id.choices = _list_choices()
    bulk.list_id.choices = options((r["id"], r["name"]) for r in lists)
    if after is not None:  # a page of newer contacts: the older ones are where we came from
        older, newer = (rows[-1]["id"] if rows else None), (rows[0]["id"] if more else None)
    else:
        older, newer = (rows[-1]["id"] if more else None), (rows[0]["id"] if before and rows else None)
    return render_template(
        "contacts.html", contacts=rows, form=form, upload=upload, bulk=bulk, filter=f, lists=lists,
        # A first page with room to spare holds every match: no need to count them again.
        matching=len(rows) if before is None and after is None and not more else contacts.count(f),
        cap=contacts.COUNT_CAP, older=older, newer=newer), code


@bp.route("/contacts")
def index():
    return _index_page()


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
    return _index_page(form, 400)


@bp.route("/contacts/upload", methods=["POST"])
def upload():
    """The quick upload: a CSV with an `email` column, imported in the request."""
    form = CsvUploadForm()
    form.list_id.choices = _list_choices()
    if not form.validate_on_submit():
        flash("Choose a CSV file to upload.", "error")
        return redirect(url_for(".index"))
    try:
        with importer.spool(form.file.data.stream, form.file.data.filename, Config.MAX_UPLOAD_BYTES) as file:
            counts, rejected = importer.quick(file, form.list_id.data or None)
    except (FileRefused, MappingError, importer.ImportFailed) as exc:
        flash(f"Upload refused: {exc}", "error")
        return redirect(url_for(".index"))
    flash(f"Imported: {counts['inserted']} new, {counts['updated']} updated, {counts['rejected']} rejected.", "ok")
    if counts["duplicates"]:
        flash(f"{counts['duplicates']} address(es) appear more than once in the file: later rows updated earlier ones.",
              "ok")
    for line, reason in rejected:
        flash(f"line {line}: {reason}", "error")
    if counts["rejected"] > len(rejected):
        flash(f"… and {counts['rejected'] - len(rejected)} more rejected rows: download them all from the "
              f"import's page.", "error")
    return redirect(url_for(".index"))


@bp.route("/contacts/bulk", methods=["POST"])
def bulk():
    f = Filter.from_args(request.args)
    form = BulkForm()
    form.list_id.choices = options((r["id"], r["name"]) for r in fetchall(q.list_all))
    if not form.validate_on_submit():
        flash("The action was not valid: " + "; ".join(e for es in form.errors.values() for e in es), "error")
        return redirect(url_for(".index", **f.args()))
    ids = None
    if form.scope.data == "selected":
        try:
            ids = [int(x) for x in request.form.getlist("ids")]
        except ValueError:
            abort(400, "The selection is not valid: reload the page.")
        if len(ids) > 10_000 or any(not 0 < i <= contacts.BIGINT_MAX for i in ids):
            abort(400, "The selection is not valid: reload the page.")
    elif form.action.data == "delete" and f.empty():
        flash("Set a filter first: deleting every contact at once is not offered.", "error")
        return redirect(url_for(".index", **f.args()))
    what = BULK_ACTIONS[form.action.data].capitalize()
    try:
        if ids is None and contacts.count(f) > contacts.BULK_INLINE_MAX:
            contacts.bulk_later(form.action.data, f, form.list_id.data, form.tag.data)
            flash(f"{what}: more than {contacts.BULK_INLINE_MAX:,} contacts, so a worker does it in the "
                  "background; the contacts change all at once when it is done.", "ok")
            return redirect(url_for(".index", **f.args()))
        n = contacts.bulk(form.action.data, f, ids, form.list_id.data, form.tag.data)
    except ContactError as exc:
        flash(f"Nothing changed: {exc}.", "error")
        return redirect(url_for(".index", **f.args()))
    flash(f"{what}: {n} contact(s) changed.", "ok")
    return redirect(url_for(".index", **f.args()))


@bp.route("/contacts/export.csv")
def export():
    f = Filter.from_args(request.args)
    return Response(stream_with_context(contacts.export_csv(f)), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="contacts.csv"'})


def _contact(contact_id: int) -> dict:
    row = fetchone(q.contact_get, {"id": contact_id}) if 0 < contact_id <= contacts.BIGINT_MAX else None
    if row is None:
        abort(404)
    return row


@bp.route("/contacts/<int:contact_id>", methods=["GET", "POST"])
def edit(contact_id):
    contact = _contact(contact_id)
    current = [r["list_id"] for r in fetchall(q.contact_list_ids, {"id": contact_id})]
    form = ContactEditForm(data={**contact, "tags": ", ".join(contact["tags"]), "lists": current,
                                 "attributes": json.dumps(contact["attributes"], ensure_ascii=False, indent=1)}
                           if request.method == "GET" else None)
    form.lists.choices = options((r["id"], r["name"]) for r in fetchall(q.list_all))
    if form.validate_on_submit():
        try:
            attributes = contacts.parse_attributes(form.attributes.data)
            with pool().connection() as conn:
                conn.execute(q.contact_update, {"id": contact_id, "email": form.email.data, "status": form.status.data,
                                                "name": (form.name.data or "").strip(), "tags": form.tags.data,
                                                "attributes": Jsonb(attributes)})
                conn.execute(q.contact_set_lists, {"id": contact_id, "lists": list(form.lists.data or [])})
            flash(f"Saved {form.email.data}.", "ok")
            return redirect(url_for(".edit", contact_id=contact_id))
        except ContactError as exc:
            form.attributes.errors.append(str(exc))
        except errors.UniqueViolation:
            form.email.errors.append("another contact has this address")
    return render_template("contact.html", contact=contact, form=form, erase=EraseForm(),
                           deliveries=fetchall(q.contact_deliveries_of, {"id": contact_id})[-20:]), \
        400 if form.errors else 200


@bp.route("/contacts/<int:contact_id>/export.json")
def export_one(contact_id):
    contact = _contact(contact_id)
    body = json.dumps(contacts.data_of(contact), default=str, ensure_ascii=False, indent=2)
    return Response(body, mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="contact-{contact_id}.json"'})


@bp.route("/contacts/<int:contact_id>/erase", methods=["POST"])
def erase(contact_id):
    contact = _contact(contact_id)
    form = EraseForm()
    if not form.validate_on_submit() or form.confirm.data.strip().lower() != contact["email"].lower():
        flash("Not erased: type the contact's address exactly to confirm.", "error")
        return redirect(url_for(".edit", contact_id=contact_id))
    done = contacts.erase(contact_id)
    if done is None:
        abort(404)
    flash(f"Erased. The address was replaced by a one-way hash in {done['deliveries']} deliveries and "
          f"{done['journal']} journal entries.", "ok")
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
