"""The rule model of the segment builder, and its translation into SQL.

A rule is a tree: groups (`and` / `or`) of ordered conditions and nested groups. Only the
fields and operators named in the tables below exist; every value is checked and converted
here and reaches SQL as a psycopg.sql.Literal, every identifier is fixed text of this module.
Nothing the manager types is ever concatenated into SQL.

    {"type": "group", "op": "and", "children": [
        {"type": "condition", "field": "tags", "op": "contains", "value": "newsletter"},
        {"type": "condition", "field": "attribute", "key": "age", "attr_type": "number",
         "op": "gt", "value": 30},
        {"type": "group", "op": "or", "children": [...]}]}
"""
import json
import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from psycopg import sql

MAX_DEPTH = 6
MAX_CONDITIONS = 200
MAX_VALUE_CHARS = 10_000
MAX_SET_VALUES = 500
MAX_KEY_CHARS = 200
MAX_DAYS = 36_500
STATUSES = ("subscribed", "unsubscribed", "bounced")


class RuleError(ValueError):
    """A rule that cannot become SQL; the message says which condition and why."""


@dataclass(frozen=True)
class Op:
    label: str
    arity: str  # none | one | two | many | days


OPS = {
    "equals": Op("equals", "one"),
    "not_equals": Op("does not equal", "one"),
    "contains": Op("contains", "one"),
    "not_contains": Op("does not contain", "one"),
    "starts_with": Op("starts with", "one"),
    "ends_with": Op("ends with", "one"),
    "in": Op("is one of", "many"),
    "gt": Op("is greater than", "one"),
    "lt": Op("is less than", "one"),
    "between": Op("is between", "two"),
    "before": Op("is before", "one"),
    "after": Op("is after", "one"),
    "within_days": Op("is within the last N days", "days"),
    "is_set": Op("is set", "none"),
    "is_not_set": Op("is not set", "none"),
    "is_true": Op("is true", "none"),
    "is_false": Op("is false", "none"),
    "in_list": Op("is in list", "one"),
    "not_in_list": Op("is not in list", "one"),
}

# Operators per value type; the builder shows exactly these.
TYPE_OPS = {
    "text": ("equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with", "in",
             "is_set", "is_not_set"),
    "number": ("equals", "not_equals", "gt", "lt", "between", "in", "is_set", "is_not_set"),
    "date": ("equals", "before", "after", "between", "within_days", "is_set", "is_not_set"),
    "boolean": ("is_true", "is_false", "is_set", "is_not_set"),
    "status": ("equals", "not_equals", "in"),
    "tags": ("contains", "not_contains", "in", "is_set", "is_not_set"),
    "list": ("in_list", "not_in_list"),
}

# The contact's own columns: field -> (label, type, operators). `email` is citext, so its
# comparisons ignore case as addresses do; email is never empty, so it has no is_set.
FIELDS = {
    "email": ("Email", "text", tuple(o for o in TYPE_OPS["text"] if o not in ("is_set", "is_not_set"))),
    "name": ("Name", "text", TYPE_OPS["text"]),
    "status": ("Status", "status", TYPE_OPS["status"]),
    "created_at": ("Created", "date", tuple(o for o in TYPE_OPS["date"] if o not in ("is_set", "is_not_set"))),
    "updated_at": ("Updated", "date", tuple(o for o in TYPE_OPS["date"] if o not in ("is_set", "is_not_set"))),
    "list": ("List membership", "list", TYPE_OPS["list"]),
    "tags": ("Tags", "tags", TYPE_OPS["tags"]),
}
ATTRIBUTE_TYPES = ("text", "number", "date", "boolean")

_NUMBER = re.compile(r"^\s*[-+]?(\d{1,30}(\.\d{0,30})?|\.\d{1,30})\s*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# --- validation: a raw tree (from JSON) -> a normalised tree ---------------------------------

def normalise(tree) -> dict:
    """Check a rule tree and return it in canonical form (values converted, unknown keys dropped)."""
    counter = [0]
    if tree is None:
        tree = {"type": "group", "op": "and", "children": []}
    return _group(tree, 1, counter, "the rule")


def _group(node, depth: int, counter: list, where: str) -> dict:
    if not isinstance(node, dict) or node.get("type") != "group":
        raise RuleError(f"{where} is not a group")
    if depth > MAX_DEPTH:
        raise RuleError(f"groups are nested more than {MAX_DEPTH} deep")
    op = node.get("op")
    if op not in ("and", "or"):
        raise RuleError(f"{where}: a group combines with 'and' or 'or'")
    children = node.get("children")
    if not isinstance(children, list):
        raise RuleError(f"{where} has no list of conditions")
    if not children and depth > 1:
        raise RuleError(f"{where} is an empty group: add a condition or remove it")
    out = []
    for i, child in enumerate(children, 1):
        label = f"condition {i}" if depth == 1 else f"{where}, item {i}"
        if isinstance(child, dict) and child.get("type") == "group":
            out.append(_group(child, depth + 1, counter, f"group {i}" if depth == 1 else label))
        else:
            counter[0] += 1
            if counter[0] > MAX_CONDITIONS:
                raise RuleError(f"a segment has at most {MAX_CONDITIONS} conditions")
            out.append(_condition(child, label))
    return {"type": "group", "op": op, "children": out}


def _condition(node, where: str) -> dict:
    if not isinstance(node, dict) or node.get("type") != "condition":
        raise RuleError(f"{where} is neither a condition nor a group")
    field = node.get("field")
    out = {"type": "condition", "field": field}
    if field == "attribute":
        key = node.get("key")
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
            raise RuleError(f"{where}: an attribute name of 1 to {MAX_KEY_CHARS} characters is needed")
        check_text(key, where, "the attribute name")
        kind = node.get("attr_type")
        if kind not in ATTRIBUTE_TYPES:
            raise RuleError(f"{where}: attribute type must be one of {', '.join(ATTRIBUTE_TYPES)}")
        out.update(key=key, attr_type=kind)
        allowed = TYPE_OPS[kind]
    elif field in FIELDS:
        kind, allowed = FIELDS[field][1], FIELDS[field][2]
    else:
        raise RuleError(f"{where}: there is no field {str(field)[:50]!r}")
    op = node.get("op")
    if op not in allowed:
        raise RuleError(f"{where}: {str(op)[:50]!r} is not an operator for {_field_label(out)} "
                        f"(use {', '.join(allowed)})")
    out["op"] = op
    arity = OPS[op].arity
    value = node.get("value")
    what = f"{where} ({_field_label(out)} {OPS[op].label})"
    if arity == "one":
        out["value"] = _value(kind, value, what)
    elif arity == "two":
        if not isinstance(value, list) or len(value) != 2:
            raise RuleError(f"{what}: 'between' needs two values")
        low, high = (_value(kind, v, what) for v in value)
        if low > high:
            raise RuleError(f"{what}: the first value is greater than the second")
        out["value"] = [low, high]
    elif arity == "many":
        if not isinstance(value, list) or not value:
            raise RuleError(f"{what}: give at least one value")
        if len(value) > MAX_SET_VALUES:
            raise RuleError(f"{what}: at most {MAX_SET_VALUES} values")
        out["value"] = list(dict.fromkeys(_value(kind, v, what) for v in value))
    elif arity == "days":
        out["value"] = _days(value, what)
    return out


def _field_label(cond: dict) -> str:
    if cond["field"] == "attribute":
        return f"attribute {cond['key'][:50]!r}"
    return FIELDS[cond["field"]][0].lower()


def check_text(value: str, where: str, what: str = "the value") -> None:
    """Text PostgreSQL can store: no NUL character, valid Unicode (no lone surrogates)."""
    if "\x00" in value:
        raise RuleError(f"{where}: {what} contains a NUL character, which PostgreSQL text cannot hold")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RuleError(f"{where}: {what} is not valid Unicode text") from None


def _value(kind: str, value, where: str):
    """One value, converted to the Python type its SQL literal is made from."""
    if kind in ("text", "tags"):
        if not isinstance(value, str):
            raise RuleError(f"{where}: the value must be text")
        if len(value) > MAX_VALUE_CHARS:
            raise RuleError(f"{where}: the value is longer than {MAX_VALUE_CHARS} characters")
        check_text(value, where)
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or not _NUMBER.match(str(value)):
            raise RuleError(f"{where}: {str(value)[:40]!r} is not a number "
                            "(digits, an optional sign and decimal point)")
        try:
            return Decimal(str(value).strip())
        except InvalidOperation:
            raise RuleError(f"{where}: {str(value)[:40]!r} is not a number") from None
    if kind == "date":
        if not isinstance(value, str) or not _DATE.match(value):
            raise RuleError(f"{where}: {str(value)[:40]!r} is not a date (YYYY-MM-DD)")
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise RuleError(f"{where}: {value!r} is not a date in the calendar") from None
        if day >= date.max:
            raise RuleError(f"{where}: the date is too far in the future")
        return day
    if kind == "status":
        if value not in STATUSES:
            raise RuleError(f"{where}: the status must be one of {', '.join(STATUSES)}")
        return value
    if kind == "list":
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2 ** 63:
            raise RuleError(f"{where}: choose a list")
        return value
    raise RuleError(f"{where}: no values for this operator")


def _days(value, where: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DAYS:
        raise RuleError(f"{where}: the number of days must be a whole number from 0 to {MAX_DAYS}")
    return value


def to_json(tree: dict) -> dict:
    """The normalised tree as plain JSON (dates and numbers as strings), for storage and the UI."""
    def plain(v):
        if isinstance(v, (date, Decimal)):
            return str(v)
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    if tree["type"] == "group":
        return {**tree, "children": [to_json(c) for c in tree["children"]]}
    return {k: plain(v) for k, v in tree.items()}


def count_conditions(tree: dict) -> int:
    if tree["type"] == "condition":
        return 1
    return sum(count_conditions(c) for c in tree["children"])


# --- translation: a normalised tree -> SQL on `public.contacts c` -----------------------------

_TRUE, _FALSE = sql.SQL("true"), sql.SQL("false")


def where(tree: dict) -> sql.Composable:
    """The boolean SQL expression of a normalised tree over `public.contacts c`: what the
    {where} of the statement templates in sql/queries/segment.sql takes."""
    if tree["type"] == "condition":
        return _condition_sql(tree)
    if not tree["children"]:
        return _TRUE if tree["op"] == "and" else _FALSE
    joiner = sql.SQL(" AND ") if tree["op"] == "and" else sql.SQL(" OR ")
    return sql.SQL("({})").format(joiner.join(where(c) for c in tree["children"]))


def _like(value: str, prefix: str, suffix: str) -> sql.Literal:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return sql.Literal(prefix + escaped + suffix)


def _not(expr: sql.Composable) -> sql.Composed:
    """'not X' is true wherever X is not true, including where the value is missing."""
    return sql.SQL("(({}) IS NOT TRUE)").format(expr)


def _date_range(column: sql.Composable, op: str, value) -> sql.Composed:
    """created_at / updated_at are timestamps: a day is [D, D + 1)."""
    if op == "equals":
        return sql.SQL("({col} >= {a} AND {col} < {b})").format(col=column, a=sql.Literal(value),
                                                                  b=sql.Literal(value + timedelta(days=1)))
    if op == "before":
        return sql.SQL("{} < {}").format(column, sql.Literal(value))
    if op == "after":
        return sql.SQL("{} >= {}").format(column, sql.Literal(value + timedelta(days=1)))
    if op == "between":
        low, high = value
        return sql.SQL("({col} >= {a} AND {col} < {b})").format(col=column, a=sql.Literal(low),
                                                                  b=sql.Literal(high + timedelta(days=1)))
    return sql.SQL("{} >= now() - make_interval(days => {})").format(column, sql.Literal(value))


def _text(column: sql.Composable, op: str, value) -> sql.Composed:
    if op == "equals":
        return sql.SQL("{} = {}").format(column, sql.Literal(value))
    if op == "not_equals":
        return _not(_text(column, "equals", value))
    if op == "contains":
        return sql.SQL("{} ILIKE {}").format(column, _like(value, "%", "%"))
    if op == "not_contains":
        return _not(_text(column, "contains", value))
    if op == "starts_with":
        return sql.SQL("{} ILIKE {}").format(column, _like(value, "", "%"))
    if op == "ends_with":
        return sql.SQL("{} ILIKE {}").format(column, _like(value, "%", ""))
    if op == "in":
        return sql.SQL("{} IN ({})").format(column, sql.SQL(", ").join(sql.Literal(v) for v in value))
    if op == "is_set":
        return sql.SQL("coalesce({}, '') <> ''").format(column)
    return sql.SQL("coalesce({}, '') = ''").format(column)


_ADDRESS = sql.SQL('lower(c.email::text) COLLATE "C"')


def _address(op: str, value) -> sql.Composed:
    """Address equality as citext's (lower-cased on both sides), in the form of the contacts'
    unique index (migration 012), so "email equals" finds its contacts instead of reading all."""
    if op == "not_equals":
        return _not(_address("equals", value))
    values = value if op == "in" else [value]
    return sql.SQL("{} IN ({})").format(_ADDRESS, sql.SQL(", ").join(
        sql.SQL("lower({})").format(sql.Literal(v)) for v in values))


def _compare(expr: sql.Composable, op: str, value) -> sql.Composed:
    """Numbers and attribute dates: plain comparisons on a typed expression."""
    symbols = {"equals": "=", "gt": ">", "lt": "<", "before": "<", "after": ">"}
    if op in symbols:
        return sql.SQL("{} {} {}").format(expr, sql.SQL(symbols[op]), sql.Literal(value))
    if op == "not_equals":
        return _not(_compare(expr, "equals", value))
    if op == "between":
        return sql.SQL("{} BETWEEN {} AND {}").format(expr, sql.Literal(value[0]), sql.Literal(value[1]))
    if op == "in":
        return sql.SQL("{} IN ({})").format(expr, sql.SQL(", ").join(sql.Literal(v) for v in value))
    if op == "within_days":
        return sql.SQL("{} >= current_date - {}").format(expr, sql.Literal(value))
    raise RuleError(f"no comparison {op}")


def _attribute(cond: dict) -> sql.Composed:
    key = sql.Literal(cond["key"])
    raw = sql.SQL("(c.attributes ->> {})").format(key)
    op, value, kind = cond["op"], cond.get("value"), cond["attr_type"]
    if op == "is_set":
        return sql.SQL("coalesce(c.attributes ->> {}, '') <> ''").format(key)
    if op == "is_not_set":
        return sql.SQL("coalesce(c.attributes ->> {}, '') = ''").format(key)
    if kind == "text":
        if op == "equals":
            # Containment, so the GIN index on attributes answers it.
            return sql.SQL("c.attributes @> {}::jsonb").format(
                sql.Literal(json.dumps({cond["key"]: value}, ensure_ascii=False)))
        if op == "in":
            return sql.SQL("({})").format(sql.SQL(" OR ").join(
                _attribute({**cond, "op": "equals", "value": v}) for v in value))
        return _text(raw, op, value)
    if kind == "boolean":
        return sql.SQL("public.segment_bool{} IS {}").format(raw, _TRUE if op == "is_true" else _FALSE)
    typed = sql.SQL("public.segment_number{}" if kind == "number" else "public.segment_date{}").format(raw)
    return _compare(typed, op, value)


def _condition_sql(cond: dict) -> sql.Composed:
    field, op, value = cond["field"], cond["op"], cond.get("value")
    if field == "attribute":
        return _attribute(cond)
    if field == "email" and op in ("equals", "not_equals", "in"):
        return _address(op, value)
    if field in ("email", "name"):
        return _text(sql.SQL("c.{}").format(sql.Identifier(field)), op, value)
    if field == "status":
        return _text(sql.SQL("c.status"), op, value)
    if field in ("created_at", "updated_at"):
        return _date_range(sql.SQL("c.{}").format(sql.Identifier(field)), op, value)
    if field == "list":
        exists = sql.SQL("EXISTS (SELECT 1 FROM public.list_members m WHERE m.list_id = {} AND m.contact_id = c.id)")
        expr = exists.format(sql.Literal(value))
        return expr if op == "in_list" else sql.SQL("NOT {}").format(expr)
    # tags
    if op == "contains":
        return sql.SQL("c.tags @> ARRAY[{}]::text[]").format(sql.Literal(value))
    if op == "not_contains":
        return _not(_condition_sql({**cond, "op": "contains"}))
    if op == "in":
        return sql.SQL("c.tags && ARRAY[{}]::text[]").format(sql.SQL(", ").join(sql.Literal(v) for v in value))
    if op == "is_set":
        return sql.SQL("cardinality(c.tags) > 0")
    return sql.SQL("cardinality(c.tags) = 0")
