"""One row of an import file checked against the manager's mapping and turned into a line of
PostgreSQL COPY text for the staging table, or refused with the reason the manager reads.

This is the per-row hot path of a million-row import: each check is the cheapest that is
exact, and the common row (plain text, no backslash or newline) is one string join.
"""
import json
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from json.encoder import encode_basestring

from .address import InvalidAddress, normalise

MAX_FIELD = 10_000
MAX_EMAIL = 320
MAX_NAME = 500  # the contacts.name CHECK
MAX_TAG = 100
MAX_TAGS = 100
MAX_KEY = 200
ROLES = ("ignore", "email", "name", "status", "tags", "attribute")
TYPES = ("text", "number", "date", "boolean")
ON_EXISTING = ("skip", "update", "overwrite")
STATUSES = ("subscribed", "unsubscribed", "bounced")
# The staging table's columns, in COPY order.
COLUMNS = ("line", "email", "name", "status", "tags", "attributes", "reason", "cells")

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?\Z")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?\Z")
_BOOLS = {"true": "true", "yes": "true", "y": "true", "1": "true", "t": "true", "on": "true", "x": "true",
          "false": "false", "no": "false", "n": "false", "0": "false", "f": "false", "off": "false"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_COPY_SPECIAL_OR_NUL = re.compile(r"[\\\t\n\r\x00]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # undecodable bytes (see sheets.py): not storable text
NULL = "\\N"
TAG_JOIN = "\x1f"  # the staging table's tags are split on this (a control character, so never in a tag)


class MappingError(ValueError):
    pass


@dataclass
class Mapping:
    """What the manager chose on the mapping page (stored as JSON with the import)."""
    columns: list  # [{"role": ..., "key": ..., "type": ...}] in file order
    on_existing: str = "update"
    lists: list = field(default_factory=list)
    resubscribe: bool = False
    tag_separator: str = ";"

    @classmethod
    def from_json(cls, data: dict) -> "Mapping":
        m = cls(columns=data["columns"], on_existing=data.get("on_existing", "update"), lists=data.get("lists", []),
                resubscribe=bool(data.get("resubscribe")), tag_separator=data.get("tag_separator") or ";")
        m.check()
        return m

    def to_json(self) -> dict:
        return {"columns": self.columns, "on_existing": self.on_existing, "lists": self.lists,
                "resubscribe": self.resubscribe, "tag_separator": self.tag_separator}

    def at(self, role: str):
        found = [i for i, c in enumerate(self.columns) if c["role"] == role]
        return found[0] if found else None

    def check(self) -> None:
        roles = [c["role"] for c in self.columns]
        if any(r not in ROLES for r in roles):
            raise MappingError("unknown column role")
        if roles.count("email") != 1:
            raise MappingError("choose exactly one column that holds the email address"
                               if roles.count("email") == 0 else "only one column can hold the email address")
        for role in ("name", "status", "tags"):
            if roles.count(role) > 1:
                raise MappingError(f"only one column can hold the {role}")
        keys = [c.get("key", "") for c in self.columns if c["role"] == "attribute"]
        if any(not k or len(k) > MAX_KEY or _CONTROL.search(k) for k in keys):
            raise MappingError(f"every attribute needs a name of 1 to {MAX_KEY} characters without control characters")
        if len(set(keys)) != len(keys):
            raise MappingError("two columns are mapped to the same attribute name")
        if any(c.get("type", "text") not in TYPES for c in self.columns if c["role"] == "attribute"):
            raise MappingError("unknown attribute type")
        if self.on_existing not in ON_EXISTING:
            raise MappingError("choose what happens to addresses that exist already")
        if not self.tag_separator or len(self.tag_separator) > 5 or _CONTROL.search(self.tag_separator):
            raise MappingError("the tag separator must be 1 to 5 visible characters")
        if not all(isinstance(x, int) for x in self.lists):
            raise MappingError("unknown list")


def _copy_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def reject_line(line: int, reason: str, cells: list) -> str:
    """A staging row for a refused file row: its reason and its cells (for the download)."""
    kept = [_SURROGATE.sub("\ufffd", c.replace("\x00", ""))[:MAX_FIELD] for c in cells[:300]]
    if len(cells) > 300:
        kept.append(f"... {len(cells) - 300} more columns")
    return (f"{line}\t\\N\t\\N\t\\N\t\\N\t\\N\t{_copy_escape(reason)}\t"
            f"{_copy_escape(json.dumps(kept, ensure_ascii=False))}\n")


class _Refused(Exception):
    """A cell the row cannot be imported with (raised only for refused rows, so rarely)."""


def _converters(columns: list) -> list:
    """(column, JSON key prefix, cell -> JSON value) for each attribute column."""

    def number(key):
        def convert(value):
            if value.isdigit() and value.isascii() and (value[0] != "0" or len(value) == 1) and len(value) < 16:
                return value
            if _NUMBER.match(value):
                return str(Decimal(value))
            hint = " (use a dot for decimals)" if re.fullmatch(r"[+-]?\d+,\d+", value) else ""
            raise _Refused(f"{key}: {value[:40]!r} is not a number{hint}")
        return convert

    def day(key):
        def convert(value):
            if _DATE.match(value):
                try:
                    date.fromisoformat(value[:10])
                    return '"' + value[:10] + '"'
                except ValueError:
                    pass
            raise _Refused(f"{key}: {value[:40]!r} is not a date (YYYY-MM-DD)")
        return convert

    def boolean(key):
        def convert(value):
            flag = _BOOLS.get(value.lower())
            if flag is None:
                raise _Refused(f"{key}: {value[:40]!r} is not a yes/no value")
            return flag
        return convert

    kinds = {"text": lambda key: encode_basestring, "number": number, "date": day, "boolean": boolean}
    return [(i, encode_basestring(c["key"]) + ":", kinds[c.get("type", "text")](c["key"]))
            for i, c in enumerate(columns) if c["role"] == "attribute"]


def row_checker(mapping: Mapping, width: int, has_header: bool):
    """check(line, cells, problem) -> (COPY line, rejected?), specialised for one mapping."""
    email_at, name_at = mapping.at("email"), mapping.at("name")
    status_at, tags_at = mapping.at("status"), mapping.at("tags")
    separator = mapping.tag_separator
    attrs = _converters(mapping.columns)
    width_word = "the header has" if has_header else "the first row has"

    def refuse(line, reason, cells):
        return reject_line(line, reason, cells), True

    def check(line: int, cells: list, problem: str | None):
        if problem:
            return refuse(line, problem, cells)
        if len(cells) != width:
            if len(cells) > width and not any(cells[width:]):
                cells = cells[:width]
            else:
                return refuse(line, f"{len(cells)} columns where {width_word} {width}", cells)
        if max(map(len, cells)) > MAX_FIELD:
            return refuse(line, f"a field is longer than {MAX_FIELD} characters", cells)
        raw = cells[email_at].strip()
        if not raw:
            return refuse(line, "the email address is missing", cells)
        if len(raw) > MAX_EMAIL:
            return refuse(line, f"the email address is longer than {MAX_EMAIL} characters", cells)
        try:
            email = normalise(raw)
        except InvalidAddress as exc:
            return refuse(line, f"not a valid email address: {exc}", cells)
        name = status = tags = None
        if name_at is not None:
            name = cells[name_at].strip()
            if len(name) > MAX_NAME:
                return refuse(line, f"the name is longer than {MAX_NAME} characters", cells)
        if status_at is not None:
            value = cells[status_at].strip().lower()
            if value:
                if value not in STATUSES:
                    return refuse(line, f"the status must be subscribed, unsubscribed or bounced, not {value[:40]!r}",
                                  cells)
                status = value
        if tags_at is not None:
            cell = cells[tags_at]
            if _CONTROL.search(cell):
                return refuse(line, "a tag holds a control character", cells)
            found = cell.split(separator)
            if " " in cell or "" in found or len(set(found)) != len(found):  # else already clean
                found = list(dict.fromkeys(t for t in (t.strip() for t in found) if t))
            if len(found) > MAX_TAGS or (len(cell) > MAX_TAG and max(map(len, found), default=0) > MAX_TAG):
                return refuse(line, f"more than {MAX_TAGS} tags, or a tag longer than {MAX_TAG} characters", cells)
            tags = TAG_JOIN.join(found)
        try:
            attributes = "{" + ",".join([key + convert(value) for i, key, convert in attrs
                                         if (value := cells[i].strip())]) + "}"
        except _Refused as exc:
            return refuse(line, str(exc), cells)
        # Only the name, the tags and the attributes' JSON can hold what COPY text must escape.
        if _COPY_SPECIAL_OR_NUL.search(f"{name}{tags}{attributes}"):
            if "\x00" in f"{name}{tags}{attributes}":
                return refuse(line, "a field contains a NUL character", cells)
            name, tags, attributes = (None if v is None else _copy_escape(v) for v in (name, tags, attributes))
        return (f"{line}\t{email}\t{NULL if name is None else name}\t{status or NULL}\t"
                f"{NULL if tags is None else tags}\t{attributes}\t\\N\t\\N\n"), False

    return check


# --- the mapping page's first guess -------------------------------------------------------------

_HEADER_ROLES = {
    "email": {"email", "emailaddress", "mail", "courriel", "correo", "emailadresse"},
    "name": {"name", "fullname", "displayname", "contactname", "nom"},
    "status": {"status", "subscriptionstatus"},
    "tags": {"tags", "tag", "labels", "groups"},
}
_WORDS_BOOLEAN = {"true", "false", "yes", "no", "y", "n"}


def guess_mapping(header: list, rows: list) -> Mapping:
    """Roles from the header names, attribute types from the first rows' values."""
    columns, taken = [], set()
    for i, name in enumerate(header):
        plain = re.sub(r"[\s_.\-]", "", name.lower())
        values = [r[i].strip() for r in rows if i < len(r) and r[i].strip()]
        role = next((r for r, names in _HEADER_ROLES.items() if plain in names and r not in taken), "attribute")
        if role == "status" and not all(v.lower() in STATUSES for v in values):
            role = "attribute"
        taken.add(role)
        columns.append({"role": role, "key": name, "type": _guess_type(values) if role == "attribute" else "text"})
    if "email" not in taken:
        for i, column in enumerate(columns):
            values = [r[i] for r in rows if i < len(r) and r[i].strip()]
            if values and sum("@" in v for v in values) * 2 > len(values):
                column.update(role="email", type="text")
                break
    separator = ";"
    tags_at = next((i for i, c in enumerate(columns) if c["role"] == "tags"), None)
    if tags_at is not None:
        sample = "".join(r[tags_at] for r in rows if tags_at < len(r))
        separator = max(";|,", key=sample.count) if any(s in sample for s in ";|,") else ";"
    return Mapping(columns=columns, tag_separator=separator)


def _guess_type(values: list) -> str:
    if not values:
        return "text"
    if all(_NUMBER.match(v) for v in values):
        return "number"
    if all(_DATE.match(v) for v in values):
        return "date"
    if all(v.lower() in _WORDS_BOOLEAN for v in values):
        return "boolean"
    return "text"
