"""The journal: every state change, filtered by campaign, event kind and address; CSV export."""
import csv
import io
import json

from flask import Blueprint, Response, abort, render_template, request, stream_with_context

from ..db import fetchall, pool, q
from ..forms import JournalFilterForm
from ..services import journal

bp = Blueprint("journal", __name__)
PAGE = 100
COLUMNS = ("id", "at", "campaign_id", "delivery_id", "email", "kind", "source", "detail")


def _filters() -> dict:
    form = JournalFilterForm(formdata=request.args)
    if not form.validate():
        problems = "; ".join(f"{form[f].label.text or f}: {', '.join(e)}" for f, e in form.errors.items())
        abort(400, description=f"The filter is not valid ({problems}).")
    return form, {"campaign_id": form.campaign.data, "kind": (form.kind.data or "").strip() or None,
                  "email": (form.email.data or "").strip() or None}


@bp.route("/journal")
def index():
    form, filters = _filters()
    with pool().connection() as conn:
        rows = [{**r, "detail_text": json.dumps(r["detail"], ensure_ascii=False, default=str)}
                for r in journal.page(conn, **filters, before=form.before.data, limit=PAGE)]
    kinds = [r["kind"] for r in fetchall(q.journal_kinds)]
    families = sorted({k.split(".", 1)[0] + ".*" for k in kinds if "." in k})
    return render_template("journal.html", rows=rows, form=form, filters=filters, kinds=kinds, families=families,
                           next_before=rows[-1]["id"] if len(rows) == PAGE else None)


def _cell(value) -> str:
    """CSV cells that a spreadsheet would run as a formula are quoted with a leading '."""
    text = json.dumps(value, default=str) if isinstance(value, dict) else ("" if value is None else str(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@bp.route("/journal.csv")
def export():
    _, filters = _filters()

    def generate():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        with pool().connection() as conn:
            for n, row in enumerate(journal.export_rows(conn, **filters), 1):
                writer.writerow([_cell(row[c]) for c in COLUMNS])
                if n % 500 == 0:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()

    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=journal.csv"})
