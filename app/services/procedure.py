"""Versioned procedures in the `segments` schema, whoever wrote them.

The contract (README, "Segments"): `segments.segment_<slug>_v<N>()` returning TABLE
(contact_id bigint), `segments.merge_<slug>_v<N>(ids bigint[])` returning TABLE (contact_id
bigint, data jsonb). A version is recorded with the checksum of its source; the function in
PostgreSQL is the truth DBAs edit, so every use compares the two (drift).

Every evaluation runs read-only: a READ ONLY (sub)transaction, as the NOLOGIN reader role,
under a statement timeout, and through the SECURITY DEFINER wrappers segment_eval/merge_eval
owned by that role (migration 002), so a procedure cannot write even when it tries to.
"""
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path

import psycopg
from psycopg import errors
from psycopg.types.json import Jsonb

from ..config import Config
from ..db import SQL_DIR, pool, q

KINDS = ("segment", "merge")
NAME = re.compile(r"^(segment|merge)_([a-z][a-z0-9_]*)_v([1-9][0-9]*)$")
MAX_VERSION = 2 ** 31 - 1
PROCEDURES_DIR = SQL_DIR / "procedures"
_ARGS = {"segment": "", "merge": "bigint[]"}
_PROBES = {"segment": "segment_probe", "merge": "merge_probe"}


class ProcedureError(ValueError):
    """A procedure that cannot be registered, evaluated or exported; the message says why."""


@dataclass
class Report:
    registered: list = field(default_factory=list)     # fn names
    refused: list = field(default_factory=list)        # (signature or file, reason), found this time
    unchanged: list = field(default_factory=list)      # files already in the database
    still_refused: list = field(default_factory=list)  # refused before and not changed since


def parse_name(fn_name: str):
    """(kind, slug, version) of a contract name, or None."""
    m = NAME.match(fn_name or "")
    if not m or len(fn_name) > 63 or int(m.group(3)) > MAX_VERSION:
        return None
    return m.group(1), m.group(2), int(m.group(3))


def signature(kind: str, fn_name: str) -> str:
    """The regprocedure text of a contract function (names are [a-z0-9_], so no quoting)."""
    return f"segments.{fn_name}({_ARGS[kind]})"


# --- read-only evaluation -------------------------------------------------------------------

@contextmanager
def read_only(conn, timeout_ms: int | None = None):
    """Run the block's statements read-only, as the reader role, under a statement timeout.

    A transaction (or a savepoint inside the caller's) that is always rolled back, which also
    ends the role, the read-only mode and the timeout with the block.
    """
    with conn.transaction(force_rollback=True):
        conn.execute(q.procedure_read_only, {"timeout_ms": str(timeout_ms or Config.SEGMENT_TIMEOUT_MS)})
        yield conn


def explain(exc: psycopg.Error, timeout_ms: int | None = None) -> str:
    """A database error raised by a procedure, in words for the manager."""
    message = (exc.diag.message_primary or str(exc)).strip()
    if isinstance(exc, errors.QueryCanceled):
        return f"did not finish within the statement timeout ({(timeout_ms or Config.SEGMENT_TIMEOUT_MS) / 1000:g} s)"
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return f"tries to write, and procedures run read-only ({message})"
    if isinstance(exc, errors.InsufficientPrivilege):
        return f"tries something the read-only role may not do ({message})"
    return f"fails: {message}"


@dataclass
class Verdict:
    problem: str | None
    matched: int | None = None


def probe(conn, kind: str, sig: str) -> Verdict:
    """Validate one function: contract, then a read-only run under the timeout.

    Segments must return ids of existing contacts; merge procedures, for a sample of contacts,
    rows of those contacts only, with JSON objects as data.
    """
    problem = conn.execute(q.procedure_contract_problem, {"signature": sig, "kind": kind}).fetchone()["problem"]
    if problem:
        return Verdict(problem)
    try:
        with read_only(conn):
            row = conn.execute(getattr(q, _PROBES[kind]), {"fn": sig}).fetchone()
    except psycopg.Error as exc:
        return Verdict(explain(exc))
    if row["strangers"]:
        what = "ids that are not contacts" if kind == "segment" else "rows for contacts it was not asked for"
        example = "NULL" if row["example"] is None else row["example"]
        return Verdict(f"returns {row['strangers']} {what} (for example {example})")
    if kind == "merge" and row["not_objects"]:
        return Verdict(f"returns {row['not_objects']} rows whose data is not a JSON object; "
                       "templates read it as {{ data.<key> }}")
    return Verdict(None, row["n"])


# --- registration ---------------------------------------------------------------------------

def record(conn, kind: str, slug: str, version: int, fn_name: str, *, author: str, origin: str,
           matched: int | None, rules: dict | None = None, name: str | None = None) -> dict | None:
    """Store a validated version with its source and checksum (in the caller's transaction)."""
    proc = conn.execute(q.procedure_ensure, {"kind": kind, "slug": slug, "name": name or slug}).fetchone()
    return conn.execute(q.procedure_version_insert, {
        "procedure_id": proc["id"], "version": version, "fn_name": fn_name, "author": author,
        "origin": origin, "rules": Jsonb(rules) if rules is not None else None, "matched": matched,
        "signature": signature(kind, fn_name),
    }).fetchone()


def refresh(origins: dict | None = None) -> Report:
    """Register every contract function in the `segments` schema that is not a version yet.

    Each is validated first; a refused one is remembered with its reason and checksum and is
    tried again only when its source changes. `origins` names the file a function came from.
    """
    report = Report()
    with pool().connection() as conn:
        conn.execute(q.procedure_refusals_prune)
        conn.commit()
        for cand in conn.execute(q.procedure_candidates).fetchall():
            known = conn.execute(q.procedure_refusal_get, {"signature": cand["signature"]}).fetchone()
            if known and known["checksum"] == cand["checksum"]:
                report.still_refused.append((cand["signature"], known["reason"]))
                continue
            verdict = Verdict(cand["problem"]) if cand["problem"] else probe(conn, cand["kind"], cand["signature"])
            parsed = parse_name(cand["fn_name"])
            if verdict.problem is None and parsed is None:
                verdict = Verdict(f"has a version number above {MAX_VERSION}")
            with conn.transaction():
                if verdict.problem:
                    conn.execute(q.procedure_refusal_upsert, {**cand, "reason": verdict.problem})
                    report.refused.append((cand["signature"], verdict.problem))
                    continue
                conn.execute(q.procedure_refusal_delete, {"signature": cand["signature"]})
                kind, slug, version = parsed
                row = record(conn, kind, slug, version, cand["fn_name"], author="dba",
                             origin=(origins or {}).get(cand["fn_name"], "psql"), matched=verdict.matched)
                if row:
                    report.registered.append(cand["fn_name"])
            conn.commit()
    return report


_FILE_HEAD = r"^(\s*(?:--[^\n]*\n\s*)*)CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION(\s+segments\.{name}\s*\()"


def register_files(directory: Path | None = None) -> Report:
    """Create the functions of sql/procedures/<contract name>.sql, then register them.

    A file holds exactly one CREATE FUNCTION of the function it is named after: it is sent as
    one prepared statement, which PostgreSQL refuses if it holds a second command. A file
    never changes a function that exists with another source (versions are immutable).
    """
    directory = Path(directory or PROCEDURES_DIR)
    report, origins = Report(), {}
    with pool().connection() as conn:
        for path in sorted(directory.glob("*.sql")):
            label = display_path(path)
            parsed = parse_name(path.stem)
            if parsed is None:
                report.refused.append((label, "the file name is not <segment|merge>_<slug>_v<N>.sql"))
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            if "\x00" in text or not re.match(_FILE_HEAD.format(name=path.stem), text, re.I):
                report.refused.append((label, f"the file must hold one CREATE FUNCTION segments.{path.stem}(...)"))
                continue
            outcome = _create_from_file(conn, parsed[0], path.stem, text)
            if outcome == "created":
                origins[path.stem] = label
            elif outcome == "unchanged":
                report.unchanged.append(label)
            else:
                report.refused.append((label, outcome))
    found = refresh(origins)
    return Report(found.registered, report.refused + found.refused, report.unchanged, found.still_refused)


def display_path(path: Path) -> str:
    """A path as the manager reads it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(SQL_DIR.parent))
    except ValueError:
        return str(path)


class _Unchanged(Exception):
    """Rolls back the comparison of a file with the function that exists already."""


def _create_from_file(conn, kind: str, fn_name: str, text: str) -> str:
    """'created', 'unchanged', or why not. An existing function is compared, never replaced:
    the file runs as CREATE OR REPLACE in a transaction that is always rolled back."""
    sig = signature(kind, fn_name)
    try:
        with conn.transaction():
            before = conn.execute(q.procedure_checksum_of, {"signature": sig}).fetchone()["checksum"]
            if before is not None:
                text = re.sub(_FILE_HEAD.format(name=fn_name), r"\1CREATE OR REPLACE FUNCTION\2", text,
                              count=1, flags=re.I)
            conn.execute(text, prepare=True)
            after = conn.execute(q.procedure_checksum_of, {"signature": sig}).fetchone()["checksum"]
            if after is None:
                raise ProcedureError(f"it does not create {sig} (wrong arguments?)")
            if before is not None and before != after:
                raise ProcedureError(f"{sig} exists with another source, and versions are immutable: "
                                     f"name the file after a new version")
            if before is not None:
                raise _Unchanged()
    except _Unchanged:
        return "unchanged"
    except ProcedureError as exc:
        return str(exc)
    except psycopg.Error as exc:
        return f"PostgreSQL refused it: {(exc.diag.message_primary or str(exc)).strip()}"
    return "created"


# --- state of recorded versions -------------------------------------------------------------

def versions(procedure_id: int) -> list[dict]:
    with pool().connection() as conn:
        return versions_in(conn, procedure_id)


def versions_in(conn, procedure_id: int) -> list[dict]:
    """All versions of a procedure, oldest first, each with its `state`: ok, drifted or missing."""
    return [_with_state(r) for r in conn.execute(q.procedure_versions_of, {"procedure_id": procedure_id})]


def version(version_id: int) -> dict | None:
    with pool().connection() as conn:
        row = conn.execute(q.procedure_version_get, {"id": version_id}).fetchone()
    return _with_state(row) if row else None


def version_in(conn, version_id: int) -> dict | None:
    row = conn.execute(q.procedure_version_get, {"id": version_id}).fetchone()
    return _with_state(row) if row else None


def _with_state(row: dict) -> dict:
    row = dict(row)
    row["signature"] = signature(row["kind"], row["fn_name"])
    if row["current_checksum"] is None:
        row["state"] = "missing"
    elif row["current_checksum"] != row["checksum"]:
        row["state"] = "drifted"
    else:
        row["state"] = "ok"
    return row


def export(version_id: int, directory: Path | None = None) -> Path:
    """Write a version's recorded source to sql/procedures/<fn_name>.sql (re-registrable)."""
    row = version(version_id)
    if row is None:
        raise ProcedureError("no such version")
    directory = Path(directory or PROCEDURES_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{row['fn_name']}.sql"
    # One line each: a name or origin holding a newline must not end the SQL comment.
    name, origin = " ".join(row["name"].split()), " ".join(row["origin"].split())
    author = "the rule builder" if row["author"] == "builder" else f"a DBA ({origin})"
    stamp = row["created_at"].astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    path.write_text(f"-- {row['kind']} {name!r} v{row['version']}, by {author}, {stamp}.\n"
                    f"-- Register with: flask --app app segments register\n"
                    f"{row['source'].rstrip()};\n", encoding="utf-8")
    return path
