"""Segments: the builder's fields, live preview, saving versions, sending and static lists.

A segment version is the function segments.segment_<slug>_v<N>() (app/services/procedure.py
holds the contract, registration and drift). The builder writes it from a rule tree
(app/services/rules.py) as a LANGUAGE sql STABLE function with a BEGIN ATOMIC body:
PostgreSQL inlines it into the calling query, so it plans exactly like the hand-written
SELECT, and the body is parsed at creation, so no quoting trick can escape it.
"""
import re
import unicodedata

import psycopg
from psycopg import sql

from ..config import Config
from ..db import fetchall, pool, q
from . import procedure, rules
from .rules import RuleError

SLUG_MAX = 30  # leaves room for segment_..._v<N> within PostgreSQL's 63-byte names


class SegmentError(ValueError):
    """A segment that cannot be saved, previewed or sent to; shown to the manager as is."""


# --- the builder's vocabulary ---------------------------------------------------------------

def attribute_type(row: dict) -> str:
    """The type of an attribute from its values: the narrowest type every value reads as."""
    for kind, count in (("number", row["numbers"]), ("date", row["dates"]), ("boolean", row["booleans"])):
        if count == row["n"]:
            return kind
    return "text"


def vocabulary() -> dict:
    """Fields, discovered attributes with their types, operators per type, lists and tags."""
    with pool().connection() as conn:
        attributes = [{"key": r["key"], "type": attribute_type(r)}
                      for r in conn.execute(q.segment_attribute_keys)]
        tags = [r["tag"] for r in conn.execute(q.segment_top_tags)]
        lists = [{"id": r["id"], "name": r["name"]} for r in conn.execute(q.list_all)]
    return {
        "fields": [{"id": f, "label": label, "type": kind, "ops": list(ops)}
                   for f, (label, kind, ops) in rules.FIELDS.items()],
        "attributes": attributes,
        "attribute_ops": {kind: list(rules.TYPE_OPS[kind]) for kind in rules.ATTRIBUTE_TYPES},
        "operators": {op: {"label": o.label, "arity": o.arity} for op, o in rules.OPS.items()},
        "statuses": list(rules.STATUSES),
        "lists": lists,
        "tags": tags,
    }


# --- live preview ---------------------------------------------------------------------------

def _normalise(raw) -> dict:
    try:
        return rules.normalise(raw)
    except RuleError as exc:
        raise SegmentError(str(exc)) from None


def estimate(raw) -> dict:
    """The planner's row estimate: instant at any size, shown while the exact count runs."""
    tree = _normalise(raw)
    query = sql.SQL(q.segment_preview_estimate).format(where=rules.where(tree))
    with pool().connection() as conn:
        try:
            with procedure.read_only(conn):
                plan = conn.execute(query).fetchone()
        except psycopg.Error as exc:
            raise SegmentError(procedure.explain(exc)) from None
    return {"estimate": int(next(iter(plan.values()))[0]["Plan"]["Plan Rows"])}


def preview(raw) -> dict:
    """Exact count and the first 20 matches, read-only under the statement timeout."""
    where = rules.where(_normalise(raw))
    with pool().connection() as conn:
        try:
            with procedure.read_only(conn):
                counts = conn.execute(sql.SQL(q.segment_preview_count).format(where=where)).fetchone()
                sample = conn.execute(sql.SQL(q.segment_preview_sample).format(where=where)).fetchall()
        except psycopg.Error as exc:
            raise SegmentError(procedure.explain(exc)) from None
    return {"matched": counts["matched"], "subscribed": counts["subscribed"], "sample": sample}


# --- saving versions ------------------------------------------------------------------------

def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")[:SLUG_MAX].strip("_")
    if not slug or not slug[0].isalpha():
        slug = ("s_" + slug)[:SLUG_MAX].strip("_")
    return slug


def create(name: str, raw) -> dict:
    """A new segment and its v1."""
    name = " ".join((name or "").split())
    if not 1 <= len(name) <= 200:
        raise SegmentError("give the segment a name of 1 to 200 characters")
    try:
        rules.check_text(name, "the segment name")
    except RuleError as exc:
        raise SegmentError(str(exc)) from None
    tree = _normalise(raw)
    with pool().connection() as conn:
        base = slugify(name)
        for n in range(1, 1000):
            slug = base if n == 1 else f"{base[:SLUG_MAX - 4]}_{n}"
            if conn.execute(q.segment_slug_taken, {"slug": slug}).fetchone()["taken"]:
                continue
            proc = conn.execute(q.procedure_insert, {"slug": slug, "name": name}).fetchone()
            if proc:
                return _save(conn, proc, tree)
        raise SegmentError("no free name for this segment: choose another name")


def save_version(procedure_id: int, raw) -> dict:
    """The next version of an existing segment."""
    tree = _normalise(raw)
    with pool().connection() as conn:
        proc = conn.execute(q.procedure_lock, {"id": procedure_id}).fetchone()
        if proc is None or proc["kind"] != "segment":
            raise SegmentError("no such segment")
        return _save(conn, proc, tree)


def _save(conn, proc: dict, tree: dict) -> dict:
    """Create the function, validate it like any DBA's, and record it, all or nothing."""
    version = conn.execute(q.segment_next_version,
                           {"procedure_id": proc["id"], "slug": proc["slug"]}).fetchone()["version"]
    fn_name = f"segment_{proc['slug']}_v{version}"
    try:
        conn.execute(sql.SQL(q.segment_function_create).format(name=sql.Identifier(fn_name), where=rules.where(tree)))
    except psycopg.errors.DuplicateFunction:
        conn.rollback()
        raise SegmentError(f"{fn_name} was created in the database meanwhile: save again") from None
    verdict = procedure.probe(conn, "segment", procedure.signature("segment", fn_name))
    if verdict.problem:
        conn.rollback()
        raise SegmentError(f"not saved: the segment {verdict.problem}")
    row = procedure.record(conn, "segment", proc["slug"], version, fn_name, author="builder",
                           origin="rule builder", matched=verdict.matched, rules=rules.to_json(tree))
    conn.commit()
    return row


# --- sending --------------------------------------------------------------------------------

def _usable(conn, version_id: int, kind: str, confirm_drift: bool, role: str) -> dict:
    v = procedure.version_in(conn, version_id)
    if v is None or v["kind"] != kind:
        raise SegmentError(f"the {role} version {version_id} does not exist")
    label = f"{v['name']} v{v['version']} ({v['fn_name']})"
    if v["state"] == "missing":
        raise SegmentError(f"the {role} {label} no longer exists in the database")
    if v["state"] == "drifted" and not confirm_drift:
        raise SegmentError(f"the {role} {label} was changed in the database after it was saved "
                           f"(drift): review it, then tick 'Send to the changed version' to send anyway")
    return v


def send_target(conn, campaign: dict, confirm_drift: bool) -> dict:
    """Check the campaign's segment, exclusion and merge versions before materialising.

    Missing versions refuse; drifted ones refuse unless the manager confirmed. Returns the
    parameters of q.campaign_materialise and the journal detail, records the checksum the
    campaign is about to send with, and sets the materialising statement's timeout.
    """
    detail, drifted = {}, []
    segment_sig = None
    if campaign.get("segment_version_id"):
        v = _usable(conn, campaign["segment_version_id"], "segment", confirm_drift, "segment")
        segment_sig = v["signature"]
        detail.update(segment=v["fn_name"], segment_version_id=v["id"], checksum=v["current_checksum"])
        drifted += [v["fn_name"]] if v["state"] == "drifted" else []
        conn.execute(q.campaign_segment_checksum, {"id": campaign["id"], "checksum": v["current_checksum"]})
    excluded = []
    for vid in campaign.get("exclude_segment_version_ids") or []:
        v = _usable(conn, vid, "segment", confirm_drift, "excluded segment")
        excluded.append(v["signature"])
        drifted += [v["fn_name"]] if v["state"] == "drifted" else []
    if campaign.get("merge_version_id"):
        v = _usable(conn, campaign["merge_version_id"], "merge", confirm_drift, "merge procedure")
        detail["merge"] = v["fn_name"]
        drifted += [v["fn_name"]] if v["state"] == "drifted" else []
    if excluded or campaign.get("exclude_list_ids"):
        detail.update(excluded_segments=excluded, excluded_lists=list(campaign.get("exclude_list_ids") or []))
    if drifted:
        detail["drift_confirmed"] = drifted
    set_materialise_timeout(conn)
    return {"params": {"segment": segment_sig, "list_id": None if segment_sig else campaign["list_id"],
                       "exclude_segments": excluded, "exclude_list_ids": list(campaign.get("exclude_list_ids") or [])},
            "detail": detail}


def version_choices() -> dict:
    """Segment and merge versions for the campaign form, newest version of each first."""
    return {kind: [(r["id"], f"{r['name']} v{r['version']} ({r['fn_name']})")
                   for r in fetchall(q.procedure_version_choices, {"kind": kind})] for kind in procedure.KINDS}


def campaign_target(campaign: dict) -> dict | None:
    """What the campaign page says about a segment target: version, drift, newer versions."""
    if not campaign.get("segment_version_id"):
        return None
    v = procedure.version(campaign["segment_version_id"])
    if v is None:
        return None
    newer = fetchall(q.procedure_newer_versions, {"procedure_id": v["procedure_id"], "version": v["version"]})
    excluded = [procedure.version(i) for i in campaign.get("exclude_segment_version_ids") or []]
    merge = procedure.version(campaign["merge_version_id"]) if campaign.get("merge_version_id") else None
    drifted = [x for x in [v, merge, *excluded] if x and x["state"] != "ok"]
    return {"version": v, "newer": newer, "excluded": [x for x in excluded if x], "merge": merge,
            "drifted": drifted}


# --- static lists ---------------------------------------------------------------------------

def _latest_usable(conn, procedure_id: int) -> dict:
    found = procedure.versions_in(conn, procedure_id)
    if not found:
        raise SegmentError("the segment has no version yet")
    latest = found[-1]
    if latest["state"] != "ok":
        raise SegmentError(f"{latest['fn_name']} is {latest['state']} in the database: "
                           "fix it or save a new version first")
    return latest


def set_materialise_timeout(conn) -> None:
    """For the rest of the transaction: a segment that runs away is cut off, not waited for."""
    conn.execute(q.statement_timeout_local, {"timeout_ms": str(Config.MATERIALISE_TIMEOUT_MS)})


def _fill(conn, list_id: int, v: dict) -> dict:
    set_materialise_timeout(conn)
    try:
        counts = conn.execute(q.segment_list_fill, {"fn": v["signature"], "list_id": list_id}).fetchone()
    except psycopg.Error as exc:
        conn.rollback()
        raise SegmentError(f"{v['fn_name']} {procedure.explain(exc, Config.MATERIALISE_TIMEOUT_MS)}") from None
    conn.execute(q.segment_list_touch, {"list_id": list_id, "version_id": v["id"]})
    return {**counts, "version": v["version"]}


def save_as_list(procedure_id: int, list_name: str) -> dict:
    """A static list holding the latest version's matches now; refresh_list updates it."""
    list_name = " ".join((list_name or "").split())
    if not 1 <= len(list_name) <= 200:
        raise SegmentError("give the list a name of 1 to 200 characters")
    try:
        rules.check_text(list_name, "the list name")
    except RuleError as exc:
        raise SegmentError(str(exc)) from None
    with pool().connection() as conn:
        v = _latest_usable(conn, procedure_id)
        row = conn.execute(q.list_insert, {"name": list_name, "description": f"from segment {v['name']}"}).fetchone()
        if row is None:
            raise SegmentError(f"a list named {list_name!r} exists already")
        conn.execute(q.segment_list_insert, {"list_id": row["id"], "procedure_id": procedure_id, "version_id": v["id"]})
        counts = _fill(conn, row["id"], v)
        conn.commit()
    return {"list_id": row["id"], **counts}


def refresh_list(list_id: int) -> dict:
    with pool().connection() as conn:
        link = conn.execute(q.segment_list_get, {"list_id": list_id}).fetchone()
        if link is None:
            raise SegmentError("this list was not made from a segment")
        counts = _fill(conn, list_id, _latest_usable(conn, link["procedure_id"]))
        conn.commit()
    return {"list_id": list_id, "name": link["name"], **counts}


def lists_of(procedure_id: int) -> list[dict]:
    return fetchall(q.segment_lists_of, {"procedure_id": procedure_id})

