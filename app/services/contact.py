"""Contacts: add one, or a small CSV where the first column named email is the address,
`name` the name, and every other column an attribute."""
import csv
import io
import json
from dataclasses import dataclass, field

from psycopg.types.json import Jsonb
from wtforms.validators import ValidationError

from ..db import pool, q
from ..forms import normalise_email

MAX_CSV_ROWS = 50_000
MAX_FIELD = 10_000
MAX_NAME = 500  # the contacts.name CHECK


class ContactError(ValueError):
    pass


@dataclass
class CsvReport:
    inserted: int = 0
    updated: int = 0
    rejected: list = field(default_factory=list)  # (line, reason)


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


def import_csv(data: bytes, list_id: int | None) -> CsvReport:
    """All rows or none: a file with bad rows reports them, and the good rows are kept."""
    if b"\x00" in data[:4096]:
        raise ContactError("this does not look like a CSV file (it contains binary data)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if not text.strip():
        raise ContactError("the file is empty")
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error as exc:
        raise ContactError(f"the header row is not valid CSV: {exc}") from None
    lowered = [h.lower() for h in header]
    if "email" not in lowered:
        raise ContactError("the first row must be a header with an 'email' column")
    email_at = lowered.index("email")
    name_at = lowered.index("name") if "name" in lowered else None
    report = CsvReport()
    with pool().connection() as conn:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # a malformed line, e.g. a field over csv's size limit
                report.rejected.append((reader.line_num, f"not valid CSV: {exc}"))
                continue
            line = reader.line_num
            if line > MAX_CSV_ROWS + 1:
                raise ContactError(f"the file has more than {MAX_CSV_ROWS} rows: use the import page")
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                report.rejected.append((line, f"{len(row)} columns where the header has {len(header)}"))
                continue
            if any(len(cell) > MAX_FIELD for cell in row):
                report.rejected.append((line, f"a field is longer than {MAX_FIELD} characters"))
                continue
            if any("\x00" in cell for cell in row):
                report.rejected.append((line, "a field contains a NUL character"))
                continue
            if name_at is not None and len(row[name_at].strip()) > MAX_NAME:
                report.rejected.append((line, f"the name is longer than {MAX_NAME} characters"))
                continue
            try:
                email = normalise_email(row[email_at])
            except ValidationError as exc:
                report.rejected.append((line, str(exc)))
                continue
            attrs = {k: v for i, (k, v) in enumerate(zip(header, row)) if i not in (email_at, name_at) and k}
            _, inserted = add(conn, email, row[name_at].strip() if name_at is not None else "", attrs, list_id)
            if inserted:
                report.inserted += 1
            else:
                report.updated += 1
    return report
