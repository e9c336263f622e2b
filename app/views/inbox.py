"""The capture server's inbox: what the local SMTP server received, readable in the UI."""
from email import policy
from email.parser import BytesParser

import nh3
from flask import Blueprint, Response, abort, render_template, request

from ..db import fetchall, fetchone, q

bp = Blueprint("inbox", __name__)
PAGE = 50


@bp.route("/inbox")
def index():
    rcpt = (request.args.get("to") or "").strip()[:320] or None
    before = request.args.get("before", type=int)
    rows = fetchall(q.capture_list, {"rcpt": rcpt, "before": before, "limit": PAGE})
    return render_template("inbox.html", messages=rows, rcpt=rcpt or "", total=fetchone(q.capture_count)["n"],
                           next_before=rows[-1]["id"] if len(rows) == PAGE else None)


@bp.route("/inbox/<int:message_id>")
def show(message_id):
    row = fetchone(q.capture_get, {"id": message_id})
    if row is None:
        abort(404)
    msg = BytesParser(policy=policy.default).parsebytes(bytes(row["raw"]))
    html_part, text_part = msg.get_body(("html",)), msg.get_body(("plain",))
    # Whatever a template produced is shown only after nh3 has removed scripts and handlers.
    html = nh3.clean(html_part.get_content()) if html_part else None
    attachments = [(p.get_filename(), p.get_content_type(), len(p.get_payload(decode=True) or b""))
                   for p in msg.iter_attachments()]
    return render_template("inbox_message.html", row=row, msg=msg, html=html,
                           text=text_part.get_content() if text_part else "", attachments=attachments)


@bp.route("/inbox/<int:message_id>/raw")
def raw(message_id):
    row = fetchone(q.capture_get, {"id": message_id})
    if row is None:
        abort(404)
    return Response(bytes(row["raw"]), mimetype="text/plain")
