"""Issue 3, safety: hostile values through every field and operator of the rule builder.

For each value the generated function (the builder's own CREATE FUNCTION template, run the way
campaigns run it: read-only, as the reader role, through segment_eval) must return exactly
what a hand-written query with bound parameters returns, or the value must be refused with a
clear RuleError. Afterwards nothing else may have changed: the canary table, the contacts,
the catalog.
"""
import hashlib
import os

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from app.db import q
from app.services import procedure, rules, segment
from app.services.rules import RuleError
from app.services.segment import SegmentError

HOSTILE = [
    "'", "''", '"', "';", "'; DROP TABLE safety_canary; --", "1' OR '1'='1", "' OR 1=1 --", "\\", "\\'", "\\\\'",
    "%", "_", "%_%", "\\%", "a%b_c", "--", "/*", "*/", "/* comment */ x", "; SELECT pg_sleep(10);",
    "$$", "$$; DROP TABLE safety_canary; $$", "$segment$", "$function$", "$_$", "$1", "%s", "%(id)s", "{}", "{where}",
    "{name}", "END; DROP TABLE safety_canary; BEGIN ATOMIC", "); DROP TABLE safety_canary; (", "E'\\x00'", "\\x00",
    "\u02bc OR 1=1 --", "\uff07; DROP TABLE safety_canary; --", "\u2018quoted\u2019", "\u201cdq\u201d",
    "line\u2028sep", "zero\u200bwidth", "\u03a9\u2248\u00e7\u221a", "\u65e5\u672c\u8a9e", "\U0001f642", "e\u0301",
    "\u0130", "\u00df", "\u01c5", "\t\n\r", "   ", "", "NULL", "null", "true", "1e999", "-0", "0x10", "2024-02-30",
    "1; DELETE FROM contacts", '{"a": 1}', "[1,2]", "array['x']", "::text", "'::jsonb @> '{}", "\\.",
    "COPY contacts TO PROGRAM 'id'", "${jndi:ldap://x}", "<script>alert(1)</script>", "x" * 10_000,
    "x" * 100_000, "a\x00b", "\x00", "\ud800",
]
STORABLE = [h for h in HOSTILE if "\x00" not in h and "\ud800" not in h and len(h) <= 10_000]
EMAIL_CI = "lower(email::text)"


def oracle(field: str, op: str) -> str:
    """The hand-written condition for one field and operator, over contacts `c` and the bound
    values `v.val` (text) and `v.key` (attribute name) of a row of unnest(%(vals)s, %(keys)s)."""
    col = {"email": "lower(c.email::text)", "name": "lower(c.name)", "attribute": "lower(c.attributes ->> v.key)"}.get(field)
    text_ops = {
        "contains": f"strpos({col}, lower(v.val)) > 0",
        "starts_with": f"starts_with({col}, lower(v.val))",
        "ends_with": f"right({col}, length(lower(v.val))) = lower(v.val)",
    }
    if field == "email":
        where = {"equals": "lower(c.email::text) = lower(v.val)",
                 "in": "lower(c.email::text) IN (lower(v.val), 'plain')", **text_ops}
    elif field == "name":
        where = {"equals": "c.name = v.val", "in": "c.name IN (v.val, 'plain')",
                 "is_set": "c.name <> ''", **text_ops}
    elif field == "tags":
        where = {"contains": "v.val = ANY (c.tags)", "in": "c.tags && ARRAY[v.val, 'plain']",
                 "is_set": "cardinality(c.tags) > 0", "is_not_set": "cardinality(c.tags) = 0"}
    else:
        where = {"equals": "c.attributes -> v.key = to_jsonb(v.val)",
                 "in": "c.attributes -> v.key IN (to_jsonb(v.val), to_jsonb('plain'::text))",
                 "is_set": "coalesce(c.attributes ->> v.key, '') <> ''", **text_ops}
    negated = {"not_equals": "equals", "not_contains": "contains", "is_not_set": "is_set"}
    if op in negated and op not in where:
        return f"({where[negated[op]]}) IS NOT TRUE"
    return where[op]


def cases():
    """(field, op, [(condition, key, value)]) for every text-like field and operator."""
    text_like = [(f, ops) for f, (_, kind, ops) in rules.FIELDS.items() if kind in ("text", "tags")]
    for field, ops in text_like + [("attribute", rules.TYPE_OPS["text"])]:
        for op in ops:
            arity = rules.OPS[op].arity
            group = []
            for h in HOSTILE:
                cond = {"type": "condition", "field": field, "op": op}
                key = None
                if field == "attribute":
                    key = h if h and len(h) <= rules.MAX_KEY_CHARS else "note"
                    cond.update(key=key, attr_type="text")
                value = {"one": h, "many": [h, "plain"]}.get(arity)
                if value is not None:
                    cond["value"] = value
                group.append((cond, key, h))
            yield field, op, group


@pytest.fixture
def world(db):
    """Contacts whose every field holds hostile values, a canary, and a fingerprint of it all."""
    db.execute("CREATE TABLE IF NOT EXISTS safety_canary (id int PRIMARY KEY, note text)")
    db.execute("INSERT INTO safety_canary VALUES (1, 'alive') ON CONFLICT DO NOTHING")
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO contacts (email, name, attributes, tags) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(f"{h[:200]}-{i}@safety.test", h[:500], Jsonb({"note": h, h[:200] or "empty": "k", "plain": "x"}), [h])
             for i, h in enumerate(STORABLE)])
    return fingerprint(db)


def fingerprint(db) -> dict:
    def digest(query):
        rows = db.execute(query).fetchall()
        return hashlib.sha256(repr(rows).encode()).hexdigest()

    return {
        "canary": db.execute("SELECT count(*) AS n FROM safety_canary WHERE note = 'alive'").fetchone()["n"],
        "contacts": digest("SELECT * FROM contacts ORDER BY id"),
        "members": digest("SELECT * FROM list_members ORDER BY 1, 2"),
        "lists": digest("SELECT * FROM lists ORDER BY id"),
        "deliveries": digest("SELECT count(*) FROM deliveries"),
        "relations": digest("SELECT relname, relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2"),
        "functions": digest("SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n "
                            "ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                            "ORDER BY 1"),
        "roles": digest("SELECT rolname, rolsuper, rolcanlogin FROM pg_roles ORDER BY 1"),
    }


def test_hostile_values_through_every_text_field_and_operator(world, db):
    """Per field and operator: one function per hostile value (the builder's own CREATE
    FUNCTION template), all run in one read-only statement through segment_eval, against the
    hand-written condition over the same values bound as parameters."""
    refused = compared = 0
    with psycopg.connect(os.environ["DATABASE_URL"], row_factory=dict_row) as conn:
        for field, op, group in cases():
            made, vals, keys = [], [], []
            for i, (cond, key, h) in enumerate(group):
                try:
                    tree = rules.normalise({"type": "group", "op": "and", "children": [cond]})
                except RuleError as exc:
                    refused += 1
                    given = [key or "", h]
                    assert any("\x00" in v or "\ud800" in v or len(v) > rules.MAX_VALUE_CHARS for v in given), \
                        (field, op, i, str(exc))
                    continue
                made.append((i, f"segment_safety_{field}_{op}_v{i + 1}", tree))
                vals.append(h if "value" in cond else "")  # is_set / is_not_set take no value
                keys.append(key)
            with conn.transaction(force_rollback=True):
                conn.execute(sql.SQL(";\n").join(
                    sql.SQL(q.segment_function_create).format(name=sql.Identifier(fn), where=rules.where(tree))
                    for _, fn, tree in made))
                runs = sql.SQL(" UNION ALL ").join(
                    sql.SQL("SELECT {}::int AS i, contact_id FROM segment_eval({}::regprocedure)").format(
                        sql.Literal(i), sql.Literal(f"segments.{fn}()")) for i, fn, _ in made)
                with procedure.read_only(conn):
                    got = conn.execute(runs).fetchall()
            expected = db.execute(
                f"SELECT v.i - 1 AS i, c.id FROM unnest(%(idx)s::int[], %(vals)s::text[], %(keys)s::text[]) "
                f"AS v(i, val, key) JOIN contacts c ON {oracle(field, op)}",
                {"idx": [i + 1 for i, _, _ in made], "vals": vals, "keys": keys}).fetchall()
            for i, fn, _ in made:
                assert {r["contact_id"] for r in got if r["i"] == i} == {r["id"] for r in expected if r["i"] == i}, \
                    (field, op, i, HOSTILE[i][:40])
                compared += 1
    assert len(HOSTILE) >= 50 and compared > 1500 and refused > 50
    assert fingerprint(db) == world


def test_hostile_values_through_the_whole_save_path(world, db):
    """Every hostile value saved as a real version (name contains <value>), then run as campaigns do."""
    saved = 0
    for i, h in enumerate(HOSTILE):
        rule = {"type": "group", "op": "or", "children": [
            {"type": "condition", "field": "name", "op": "contains", "value": h},
            {"type": "condition", "field": "attribute", "key": h[:200] or "k", "attr_type": "text",
             "op": "equals", "value": h}]}
        try:
            v = segment.create(f"hostile {i} {h[:100]}", rule)
        except SegmentError as exc:
            assert "NUL" in str(exc) or "Unicode" in str(exc) or "longer than" in str(exc), str(exc)
            continue
        got = {r["contact_id"] for r in db.execute("SELECT contact_id FROM segment_eval(%s::regprocedure)",
                                                   (f"segments.{v['fn_name']}()",))}
        expected = {r["id"] for r in db.execute(
            "SELECT id FROM contacts WHERE strpos(lower(name), lower(%(v)s)) > 0 "
            "OR attributes -> %(k)s = to_jsonb(%(v)s::text)", {"v": h, "k": h[:200] or "k"})}
        assert got == expected, (i, h[:40])
        assert v["matched"] == len(got) and procedure.version(v["id"])["state"] == "ok"
        saved += 1
    assert saved >= 50
    after = fingerprint(db)
    assert {k: after[k] for k in ("canary", "contacts", "members", "lists", "deliveries", "roles")} == \
        {k: world[k] for k in ("canary", "contacts", "members", "lists", "deliveries", "roles")}
    # The only new objects are the versions' functions, in the segments schema.
    new = db.execute("SELECT count(*) AS n FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                     "WHERE n.nspname = 'segments' AND p.proname ^@ 'segment_hostile_'").fetchone()["n"]
    assert new == saved


@pytest.mark.parametrize("field,op,values", [
    ("status", "equals", HOSTILE), ("status", "in", [[h] for h in HOSTILE]),
    ("created_at", "before", HOSTILE), ("updated_at", "between", [[h, h] for h in HOSTILE]),
    ("created_at", "within_days", HOSTILE), ("list", "in_list", HOSTILE),
])
def test_hostile_values_for_typed_fields_are_refused(field, op, values):
    for value in values:
        with pytest.raises(RuleError):
            rules.normalise({"type": "group", "op": "and", "children": [
                {"type": "condition", "field": field, "op": op, "value": value}]})


@pytest.mark.parametrize("attr_type,op", [(t, o) for t in ("number", "date") for o in rules.TYPE_OPS[t]
                                          if rules.OPS[o].arity in ("one", "two", "many", "days")])
def test_hostile_values_for_typed_attributes_are_refused(attr_type, op):
    arity = rules.OPS[op].arity
    for h in HOSTILE:
        if h.strip().lstrip("-+").replace(".", "", 1).isdigit():  # "-0" is a number
            continue
        value = {"one": h, "two": [h, h], "many": [h], "days": h}[arity]
        with pytest.raises(RuleError):
            rules.normalise({"type": "group", "op": "and", "children": [
                {"type": "condition", "field": "attribute", "key": h[:200] or "k", "attr_type": attr_type,
                 "op": op, "value": value}]})


def test_typed_attributes_match_hand_written_queries(db):
    """Numbers, dates and booleans stored as CSV strings (and as JSON), compared with SQL
    written by hand: a malformed value never fails the segment, it just does not match."""
    rows = [({"n": "12", "d": "2024-02-29", "b": "yes"}), ({"n": 7, "d": "2023-02-29", "b": True}),
            ({"n": " -3.5 ", "d": "2024-12-31T10:00:00", "b": "0"}), ({"n": "1e5", "d": "31/12/2024", "b": "maybe"}),
            ({"n": "abc'; --", "d": "0000-01-01", "b": "FALSE"}), ({})]
    with db.cursor() as cur:
        cur.executemany("INSERT INTO contacts (email, attributes) VALUES (%s, %s)",
                        [(f"typed{i}@typed.test", Jsonb(a)) for i, a in enumerate(rows)])
    num = ("CASE WHEN attributes->>'n' ~ '^\\s*[-+]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)\\s*$' "
           "THEN btrim(attributes->>'n')::numeric END")
    day = ("CASE WHEN attributes->>'d' ~ '^(2024-02-29|2024-12-31)' THEN left(attributes->>'d', 10)::date END")
    checks = [
        ({"key": "n", "attr_type": "number", "op": "gt", "value": "0"}, f"{num} > 0"),
        ({"key": "n", "attr_type": "number", "op": "between", "value": ["-4", "12"]}, f"{num} BETWEEN -4 AND 12"),
        ({"key": "n", "attr_type": "number", "op": "not_equals", "value": 7}, f"({num} = 7) IS NOT TRUE"),
        ({"key": "n", "attr_type": "number", "op": "in", "value": ["12", "-3.5"]}, f"{num} IN (12, -3.5)"),
        ({"key": "d", "attr_type": "date", "op": "after", "value": "2024-06-01"}, f"{day} > '2024-06-01'"),
        ({"key": "d", "attr_type": "date", "op": "equals", "value": "2024-02-29"}, f"{day} = '2024-02-29'"),
        ({"key": "b", "attr_type": "boolean", "op": "is_true"},
         "lower(attributes->>'b') IN ('yes', 'true')"),
        ({"key": "b", "attr_type": "boolean", "op": "is_false"}, "lower(attributes->>'b') IN ('0', 'false')"),
        ({"key": "n", "attr_type": "number", "op": "is_not_set"}, "coalesce(attributes->>'n', '') = ''"),
    ]
    for cond, where in checks:
        rule = {"type": "group", "op": "and", "children": [
            {"type": "condition", "field": "email", "op": "ends_with", "value": "@typed.test"},
            {"type": "condition", "field": "attribute", **cond}]}
        got = {r["email"] for r in segment.preview(rule)["sample"]}
        expected = {r["email"] for r in db.execute(
            f"SELECT email FROM contacts WHERE email LIKE '%@typed.test' AND {where}")}
        assert got == expected, (cond, got, expected)
    # Hostile attribute names through the typed reads, two of them in one rule.
    for i, key in enumerate(STORABLE[:40]):
        key = key[:rules.MAX_KEY_CHARS] or "k"
        db.execute("INSERT INTO contacts (email, attributes) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                   (f"key{i}@typed-keys.test", Jsonb({key: str(i), "flag": "yes" if i % 2 else "no"})))
        rule = {"type": "group", "op": "and", "children": [
            {"type": "condition", "field": "email", "op": "ends_with", "value": "@typed-keys.test"},
            {"type": "condition", "field": "attribute", "key": key, "attr_type": "number", "op": "gt", "value": "-1"},
            {"type": "condition", "field": "attribute", "key": key, "attr_type": "boolean", "op": "is_set"},
            {"type": "condition", "field": "attribute", "key": "flag", "attr_type": "boolean", "op": "is_true"}]}
        got = {r["email"] for r in segment.preview(rule)["sample"]}
        expected = {r["email"] for r in db.execute(
            "SELECT email FROM contacts WHERE email LIKE '%%@typed-keys.test' AND attributes ->> %s ~ '^[0-9]+$' "
            "AND attributes ->> 'flag' = 'yes'", (key,))}
        assert got == expected, (key[:40], got, expected)


@pytest.mark.parametrize("bad", [
    None, [], "x", 1, {"type": "group", "op": "xor", "children": []},
    {"type": "group", "op": "and", "children": "x"},
    {"type": "group", "op": "and", "children": [{"type": "condition", "field": "email; DROP TABLE x", "op": "equals", "value": "a"}]},
    {"type": "group", "op": "and", "children": [{"type": "condition", "field": "email", "op": "= 1 OR", "value": "a"}]},
    {"type": "group", "op": "and", "children": [{"type": "condition", "field": "attribute", "key": "k", "attr_type": "text); --", "op": "equals", "value": "a"}]},
    {"type": "group", "op": "and", "children": [{"type": "condition", "field": "attribute", "key": "", "attr_type": "text", "op": "equals", "value": "a"}]},
    {"type": "group", "op": "and", "children": [{"type": "condition", "field": "email", "op": "equals", "value": {"$ne": 1}}]},
    {"type": "group", "op": "and", "children": [{"type": "group", "op": "or", "children": []}]},
    {"type": "group", "op": "and", "children": [{"type": "condition", "field": "email", "op": "in", "value": ["a"] * 501}]},
    {"type": "group", "op": "and", "children": [{"type": "condition", "field": "email", "op": "equals", "value": "a"}] * 201},
])
def test_malformed_rules_are_refused_with_a_reason(bad):
    if bad is None:  # no rule at all is the empty rule: every contact
        assert rules.normalise(bad)["children"] == []
        return
    with pytest.raises(RuleError) as info:
        rules.normalise(bad)
    assert str(info.value)


def test_nesting_is_bounded():
    node = {"type": "condition", "field": "email", "op": "contains", "value": "a"}
    for _ in range(rules.MAX_DEPTH + 1):
        node = {"type": "group", "op": "or", "children": [node]}
    with pytest.raises(RuleError, match="nested"):
        rules.normalise(node)
