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
