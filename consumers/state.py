"""A per-process view of campaign states, refreshed at most twice a second.

Workers check it before every batch, so a pause reaches work already prefetched within a
second without one query per email.
"""
import threading
import time

from app.db import fetchone, q

TTL = 0.5
_cache: dict[int, tuple[float, str | None]] = {}
_lock = threading.Lock()


def campaign_status(campaign_id: int, fresh: bool = False) -> str | None:
    now = time.monotonic()
    hit = _cache.get(campaign_id)
    if hit and now - hit[0] < TTL and not fresh:
        return hit[1]
    row = fetchone(q.campaign_status, {"id": campaign_id})
    status = row["status"] if row else None
    with _lock:
        _cache[campaign_id] = (now, status)
    return status


def is_running(campaign_id: int) -> bool:
    """Cached when running; a "not running" answer is re-read, because work dropped on a stale
    "paused" right after a resume would leave deliveries open with nothing queued for them."""
    return campaign_status(campaign_id) == "running" or campaign_status(campaign_id, fresh=True) == "running"
