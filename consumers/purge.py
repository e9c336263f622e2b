"""Purge-to-stop: notice that a running campaign's work vanished from the queues.

Ops stop sending at once by purging `prepare` and/or `dispatch` in the RabbitMQ console.
The rows stay open in PostgreSQL, so the campaign would otherwise sit "running" forever.
A campaign is taken as purged when, for PURGE_CONFIRM_SECONDS on end:

- its due open deliveries (queued, or retry past its due time) outnumber what every
  message in the work queues could still carry (PREPARE_BATCH deliveries each, counting
  ready and unacknowledged messages, delay queues included), with no `enqueue` job left;
- and it made no progress: nothing of it was journaled (no outcome, no control) and no
  worker picked up one of its messages (`campaign_activity`, written by a middleware as a
  message is taken, so work in flight counts even before it records anything).

The window is longer than the management API's statistics interval (5 s), so a stale zero
right after a start or resume cannot trigger it. Then the campaign is stopped through the
same path as a manager's Stop, with its exact counts journaled as `purge.detected`; a
resume re-enqueues exactly what is open.
"""
import logging
import time

from app.broker_setup import queue_depths
from app.config import Config
from app.db import q
from app.services import campaign as campaigns
from app.services import journal
from app.services.campaign import CampaignError
from app.services.journal import Event

log = logging.getLogger("purge")
CARRIERS = ("prepare", "prepare.DQ", "dispatch", "dispatch.DQ", "urgent", "urgent.DQ")
ENQUEUERS = ("enqueue", "enqueue.DQ")


class PurgeWatch:
    def __init__(self):
        self.suspects: dict[int, tuple[float, tuple]] = {}  # campaign -> (since, progress marker)

    def depths(self) -> dict[str, int] | None:
        try:
            return queue_depths()
        except Exception as exc:  # no verdict without the figures
            log.warning("queue depths unavailable: %s", exc)
            return None

    def check(self, conn, depths: dict[str, int] | None) -> list[int]:
        """One look; returns the campaigns stopped now. A campaign that made progress since
        the last look costs one index probe; only one that stalled for the whole window is
        counted against the queues."""
        if depths is None or any(depths.get(name, 0) for name in ENQUEUERS):
            self.suspects.clear()
            return []
        coverage = Config.PREPARE_BATCH * sum(depths.get(name, 0) for name in CARRIERS)
        now = time.monotonic()
        stopped = []
        running = {r["id"] for r in conn.execute(q.scheduler_running_campaigns).fetchall()}
        for cid in set(self.suspects) - running:
            del self.suspects[cid]
        for cid in running:
            last = tuple(conn.execute(q.purge_progress, {"id": cid}).fetchone().values())
            since, seen = self.suspects.get(cid, (now, None))
            if seen != last:  # progress (or first look): watch from now
                self.suspects[cid] = (now, last)
                continue
            if now - since < Config.PURGE_CONFIRM_SECONDS:
                continue
            due = conn.execute(q.purge_open_due, {"id": cid, "limit": coverage + 1}).fetchone()["n"]
            if due <= coverage:  # the queues can still carry its open work: look again later
                self.suspects[cid] = (now, last)
                continue
            del self.suspects[cid]
            if self._stop(conn, cid, coverage, depths):
                stopped.append(cid)
        return stopped

    def _stop(self, conn, cid: int, coverage: int, depths: dict) -> bool:
        try:
            result = campaigns.control(cid, "stop", source="scheduler", detail={"reason": "purge detected"})
        except CampaignError as exc:  # paused or finished meanwhile: nothing to do
            log.info("campaign %s not stopped after a purge: %s", cid, exc)
            return False
        if not result["changed"]:
            return False
        with conn.transaction():
            journal.append(conn, [Event("purge.detected", cid, source="scheduler", detail={
                "counts": result["counts"], "queue_capacity": coverage,
                "queues": {k: v for k, v in depths.items() if k in CARRIERS + ENQUEUERS},
                "confirm_seconds": Config.PURGE_CONFIRM_SECONDS})])
        log.warning("campaign %s: work purged from the queues; stopped with %s", cid, result["counts"])
        return True
