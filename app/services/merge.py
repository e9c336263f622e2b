"""Merge data: per-contact JSON for templates, from a merge procedure version.

`segments.merge_<slug>_v<N>(ids bigint[])` returns TABLE (contact_id bigint, data jsonb);
templates read it as {{ data.<key> }}. Merge procedures are written by DBAs (in psql or as
sql/procedures/*.sql files), validated and versioned like segments (app/services/procedure.py),
and called once per prepare batch, read-only, under MERGE_TIMEOUT_MS.
"""
import functools

import psycopg

from ..config import Config
from ..db import pool, q
from . import procedure


class MergeError(ValueError):
    """The merge procedure failed for a batch; the message becomes each email's failure reason."""


@functools.lru_cache(maxsize=64)
def _signature(version_id: int) -> str:
    """Versions never change (a trigger refuses updates), so their function names cache forever."""
    v = procedure.version(version_id)
    if v is None or v["kind"] != "merge":
        raise MergeError(f"merge procedure version {version_id} does not exist")
    return v["signature"]


def data_for(version_id: int, contact_ids: list[int]) -> dict[int, dict]:
    """{contact_id: data} for the given contacts, in one read-only call."""
    if not contact_ids:
        return {}
    sig = _signature(version_id)
    with pool().connection() as conn:
        try:
            with procedure.read_only(conn, Config.MERGE_TIMEOUT_MS):
                rows = conn.execute(q.merge_data, {"fn": sig, "ids": list(contact_ids)}).fetchall()
        except psycopg.Error as exc:
            raise MergeError(f"merge procedure {sig} {procedure.explain(exc, Config.MERGE_TIMEOUT_MS)}") from None
    return {r["contact_id"]: r["data"] for r in rows if isinstance(r["data"], dict)}


def for_campaign(campaign: dict, contact_ids: list[int]) -> dict[int, dict]:
    """The campaign's merge data for these contacts, or nothing when it names no procedure."""
    ids = [i for i in contact_ids if i]
    return data_for(campaign["merge_version_id"], ids) if campaign.get("merge_version_id") and ids else {}
