"""The append-only journal: every state change, written in batches.

An event may carry a dedupe key; the broker delivers at least once, and the key turns a
replayed message's events into no-ops instead of duplicates.
"""
from dataclasses import dataclass, field

from psycopg.types.json import Jsonb

from ..db import q


@dataclass
class Event:
    kind: str
    campaign_id: int | None = None
    delivery_id: int | None = None
    email: str | None = None
    source: str = "system"
    detail: dict = field(default_factory=dict)
    key: str | None = None


def append(conn, events: list[Event]) -> None:
    """Write events with the caller's connection, so they commit with the change they record."""
    if not events:
        return
    conn.execute(q.journal_append, {
        "campaign_ids": [e.campaign_id for e in events],
        "delivery_ids": [e.delivery_id for e in events],
        "emails": [e.email for e in events],
        "kinds": [e.kind for e in events],
        "sources": [e.source for e in events],
        "details": [Jsonb(e.detail) for e in events],
        "keys": [e.key for e in events],
    })


def kind_filter(kind: str | None) -> dict:
    """An exact kind, or a family when it ends in ".*" (a LIKE prefix, its wildcards escaped)."""
    if not kind or not kind.endswith(".*"):
        return {"kind": kind or None, "family": None}
    prefix = kind[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {"kind": None, "family": prefix + "%"}


def page(conn, campaign_id=None, kind=None, email=None, before=None, limit=100) -> list[dict]:
    return conn.execute(q.journal_page, {"campaign_id": campaign_id, **kind_filter(kind),
                                         "email": email or None, "before": before, "limit": limit}).fetchall()


def export_rows(conn, campaign_id=None, kind=None, email=None):
    """Every matching event, streamed through a server-side cursor (flat memory)."""
    with conn.cursor(name="journal_export") as cur:
        cur.itersize = 2000
        cur.execute(q.journal_page, {"campaign_id": campaign_id, **kind_filter(kind),
                                     "email": email or None, "before": None, "limit": None})
        yield from cur
