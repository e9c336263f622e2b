"""Contacts: add or edit one, filter a million of them, act on a selection or a whole filter,
export a filter as CSV, and the data-protection pair: one person's data as JSON, and erasure.

(Files of contacts go through app/services/importer.py.)
"""
import csv
import hashlib
import hmac
import io
import json
import re
from dataclasses import dataclass

from psycopg.types.json import Jsonb

from ..config import Config
from ..db import pool, q
from . import journal
from .import_rows import STATUSES
from .journal import Event
from .sheets import spreadsheet_safe

PAGE = 50
COUNT_CAP = 10_000
BULK_INLINE_MAX = 10_000  # contacts a bulk action changes in the request; more go to a worker
BIGINT_MAX = 2**63 - 1


class ContactError(ValueError):
    pass


def parse_attributes(text: str | None) -> dict:
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ContactError(f"attributes are not valid JSON: {exc}") from None
    except RecursionError:
        raise ContactError("attributes are not valid JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise ContactError("attributes must be a JSON object, like {\"city\": \"Oslo\"}")
    if "\\u0000" in json.dumps(value):  # JSONB cannot store a NUL character
        raise ContactError("attributes cannot contain a NUL character (\\u0000)")
    return value


def add(conn, email: str, name: str, attributes: dict, list_id: int | None) -> tuple[int, bool]:
    row = conn.execute(q.contact_upsert, {"email": email, "name": name or "", "attributes": Jsonb(attributes)}).fetchone()
    if list_id:
        conn.execute(q.list_add_members, {"list_id": list_id, "contact_ids": [row["id"]]})
    return row["id"], row["inserted"]


# --- the filter ------------------------------------------------------------------------------

@dataclass
class Filter:
    """What the contacts page shows: a search (part of the email or the name, or `key=value`
    for one attribute), a list, a tag and a status."""
    search: str = ""
    list_id: int | None = None
    tag: str = ""
    status: str = ""

    @classmethod
    def from_args(cls, args) -> "Filter":
        list_id = args.get("list", type=int)
        status = args.get("status", "")
        return cls(search=(args.get("q") or "").strip()[:320], tag=(args.get("tag") or "").strip()[:100],
                   list_id=list_id if list_id and 0 < list_id <= BIGINT_MAX else None,
                   status=status if status in STATUSES else "")

    def args(self) -> dict:
        """For links that keep the filter."""
        return {k: v for k, v in (("q", self.search), ("list", self.list_id), ("tag", self.tag),
                                  ("status", self.status)) if v}

    def params(self, ids: list | None = None) -> dict:
        """The filter parameters every contacts query takes."""
        pattern, attrs = None, None
        if self.search:
            key, eq, value = self.search.partition("=")
            if eq and key.strip() and value.strip():
                attrs = [Jsonb({key.strip(): v}) for v in _typed_values(value.strip())]
            else:
                escaped = re.sub(r"([\\%_])", r"\\\1", self.search)
                pattern = f"%{escaped}%"
        return {"pattern": pattern, "attrs": attrs, "tag": self.tag or None, "status": self.status or None,
                "list_id": self.list_id, "ids": ids}

    def empty(self) -> bool:
        return not (self.search or self.list_id or self.tag or self.status)


def _typed_values(text: str) -> list:
    """`age=42` matches the number 42 and the text "42" (imports store typed attributes)."""
    try:
        typed = json.loads(text)
    except ValueError:
        return [text]
    return [typed, text] if isinstance(typed, (int, float, bool)) and not isinstance(typed, str) else [text]


def page(f: Filter, before: int | None, after: int | None) -> tuple[list, bool]:
    """A page of contacts, newest first, and whether more lie beyond it in the direction
    walked (one row more is read to know)."""
    with pool().connection() as conn:
        if after is not None:
            rows = conn.execute(q.contact_page_newer, {**f.params(), "after": after, "limit": PAGE + 1}).fetchall()
            return rows[:PAGE][::-1], len(rows) > PAGE
        rows = conn.execute(q.contact_page, {**f.params(), "before": before or BIGINT_MAX, "limit": PAGE + 1}).fetchall()
        return rows[:PAGE], len(rows) > PAGE


def count(f: Filter) -> int:
    with pool().connection() as conn:
        return conn.execute(q.contact_count_capped, {**f.params(), "cap": COUNT_CAP + 1}).fetchone()["n"]


# --- bulk actions ----------------------------------------------------------------------------

BULK = {"add_list": q.contact_bulk_add_list, "remove_list": q.contact_bulk_remove_list,
        "add_tag": q.contact_bulk_add_tag, "remove_tag": q.contact_bulk_remove_tag, "delete": q.contact_bulk_delete}


def check_bulk(action: str, ids: list | None, list_id: int | None, tag: str | None) -> None:
    if action in ("add_list", "remove_list") and not list_id:
        raise ContactError("choose the list")
    if action in ("add_tag", "remove_tag") and not (tag and tag.strip()):
        raise ContactError("give the tag")
    if ids is not None and not ids:
        raise ContactError("tick at least one contact, or act on the whole filter")


def bulk(action: str, f: Filter, ids: list | None, list_id: int | None, tag: str | None) -> int:
    """Apply one action to the selection (`ids`) or, when ids is None, to the whole filter.
    One statement, so it is all or nothing. Returns how many rows changed."""
    check_bulk(action, ids, list_id, tag)
    params = {**(Filter() if ids is not None else f).params(ids), "list_id_target": list_id,
              "tag_target": (tag or "").strip()}
    with pool().connection() as conn:
        n = conn.execute(BULK[action], params).rowcount
        if action == "delete":
            journal.append(conn, [Event("contacts.deleted", source="ui", detail={"count": n, "filter": f.args(),
                                                                                  "selected": ids is not None})])
    return n


def bulk_later(action: str, f: Filter, list_id: int | None, tag: str | None) -> None:
    """A bulk action on a filter too large for a web request (a million list memberships take
    about a minute): the same statement, run by a worker (queue `imports`)."""
    from consumers.importer import bulk_contacts  # the web app only publishes

    check_bulk(action, None, list_id, tag)
    bulk_contacts.send(action, f.args(), list_id, tag)


# --- export ----------------------------------------------------------------------------------

FIXED = ("email", "name", "status", "tags", "created_at", "updated_at")


def export_csv(f: Filter):
    """The filter's contacts as CSV text, produced as it is read (a server-side cursor), with
    one column per attribute and every cell safe to open in a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out)
    with pool().connection() as conn:
        keys = [r["key"] for r in conn.execute(q.contact_export_keys, f.params())]
        writer.writerow([*FIXED, *keys])
        yield out.getvalue()
        with conn.cursor(name="contact_export") as cur:
            cur.itersize = 2000
            cur.execute(q.contact_export, f.params())
            while batch := cur.fetchmany(2000):
                out.seek(0)
                out.truncate()
                for c in batch:
                    attrs = c["attributes"]
                    writer.writerow([spreadsheet_safe(v) for v in (
                        c["email"], c["name"], c["status"], ";".join(c["tags"]), c["created_at"].isoformat(),
                        c["updated_at"].isoformat(), *(_cell(attrs.get(k)) for k in keys))])
                yield out.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# --- one person's data --------------------------------------------------------------------------

def data_of(contact: dict) -> dict:
    """Everything stored about one contact, for a data-access request."""
    with pool().connection() as conn:
        params = {"id": contact["id"], "email": contact["email"]}
        return {
            "contact": {k: contact[k] for k in ("id", "email", "name", "status", "tags", "attributes",
                                                "created_at", "updated_at")},
            "lists": conn.execute(q.contact_lists_of, params).fetchall(),
            "deliveries": conn.execute(q.contact_deliveries_of, params).fetchall(),
            "journal": conn.execute(q.contact_journal_of, params).fetchall(),
            "suppression": conn.execute(q.contact_suppression_of, params).fetchone(),
        }


def erased_address(email: str) -> str:
    """The one-way stand-in for an erased address: keyed, so it cannot be found by hashing
    a list of guessed addresses, and the same for every row that held it."""
    digest = hmac.new(Config.SECRET_KEY.encode(), email.strip().lower().encode(), hashlib.sha256).hexdigest()
    return f"erased-{digest[:40]}"


def erase(contact_id: int) -> dict | None:
    """Erase a contact for a data-protection request: the contact goes, and its address becomes
    a one-way hash in the outbox, the journal and the suppression list, so every count stays
    right. Deliveries still waiting to go out fail instead of going to the hash. One
    transaction. Returns what was rewritten, or None if there is no such contact."""
    from .campaign import complete_if_done

    with pool().connection() as conn:
        contact = conn.execute(q.contact_get, {"id": contact_id}).fetchone()
        if contact is None:
            return None
        email, stand_in = contact["email"], erased_address(contact["email"])
        conn.execute(q.contact_erasure_on)
        deliveries = conn.execute(q.contact_deliveries_of, {"id": contact_id}).fetchall()
        waiting = [d for d in deliveries if d["status"] in ("queued", "retry")]
        if waiting:
            conn.execute(q.delivery_fail_open, {"ids": [d["id"] for d in waiting], "errors": [ERASED] * len(waiting)})
        params = {"id": contact_id, "email": email, "hash": stand_in, "delivery_ids": [d["id"] for d in deliveries],
                  "pattern": re.escape(email)}
        done = {
            "deliveries": conn.execute(q.contact_erase_deliveries, params).rowcount,
            "journal": conn.execute(q.contact_erase_journal, params).rowcount,
            "failed": len(waiting),
        }
        conn.execute(q.contact_erase_suppression, params)
        conn.execute(q.contact_erase_captured, params)
        conn.execute(q.contact_erase_rejects, params)
        conn.execute(q.contact_delete, params)
        journal.append(conn, [Event("delivery.failed", d["campaign_id"], d["id"], stand_in, source="ui",
                                    detail={"error": ERASED, "stage": "erasure"}, key=f"d{d['id']}.erased")
                              for d in waiting] +
                       [Event("contact.erased", email=stand_in, source="ui", detail={"contact_id": contact_id, **done})])
        for campaign_id in {d["campaign_id"] for d in waiting}:
            complete_if_done(conn, campaign_id)
    return {"hash": stand_in, **done}


ERASED = "the contact was erased (data-protection request)"
