"""The scheduler: one leader (a PostgreSQL advisory lock) doing the periodic chores.

- start scheduled campaigns whose time has come;
- mark deliveries claimed by a worker that died as `unknown` once its heartbeat has been
  silent for WORKER_DEAD_AFTER (never resent without the manager's say);
- complete running campaigns with nothing left open (a crash can skip the worker's check);
- finish a materialise whose start died after its first page (app/services/campaign.py);
- purge-to-stop: stop a running campaign whose work was purged from the queues
  (consumers/purge.py).
"""
import logging
import os
import time

import psycopg
from psycopg.rows import dict_row

from app.config import Config
from app.db import q
from app.services import campaign as campaigns
from app.services import journal
from app.services.campaign import CampaignError
from app.services.journal import Event

from .purge import PurgeWatch

log = logging.getLogger("scheduler")
LEADER_LOCK = 727_002
INTERVAL = float(os.environ.get("SCHEDULER_INTERVAL", "1"))


def tick(conn, watch: PurgeWatch, connected_at) -> None:
    for row in conn.execute(q.scheduler_due_campaigns).fetchall():
        try:
            campaigns.start(row["id"], source="scheduler")
        except CampaignError as exc:
            with conn.transaction():
                journal.append(conn, [Event("campaign.start_refused", row["id"], source="scheduler",
                                            detail={"error": str(exc)})])
    finish_materialising(conn)
    with conn.transaction():
        stale = conn.execute(q.scheduler_mark_unknown, {"grace": Config.UNKNOWN_AFTER, "connected_at": connected_at,
                                                        "dead_after": Config.WORKER_DEAD_AFTER}).fetchall()
        journal.append(conn, [Event("delivery.unknown", r["campaign_id"], r["id"], r["email"], source="scheduler",
                                    detail={"claimed_at": r["claimed_at"].isoformat(), "claimed_by": r["claimed_by"]},
                                    key=f"d{r['id']}.a{r['attempts']}.unknown") for r in stale])
        conn.execute(q.scheduler_claims_prune)
        conn.execute(q.heartbeat_prune)
    for row in conn.execute(q.scheduler_running_campaigns).fetchall():
        with conn.transaction():
            campaigns.complete_if_done(conn, row["id"])
        conn.execute(q.campaign_counts_fold, {"id": row["id"]})  # keeps the campaign page's counts cheap
    watch.check(conn, watch.depths())


_materialise_retry_at: dict[int, float] = {}


def finish_materialising(conn) -> None:
    """A start that died between its first page and the rest left its campaign marked as
    materialising: write the rest now (at most once a minute per campaign if it fails)."""
    for row in conn.execute(q.campaign_materialise_unfinished).fetchall():
        if _materialise_retry_at.get(row["id"], 0) > time.monotonic():
            continue
        try:
            if campaigns.finish_interrupted_materialise(row["id"]):
                log.warning("campaign %s: finished a materialise its start left unfinished", row["id"])
        except CampaignError as exc:
            _materialise_retry_at[row["id"]] = time.monotonic() + 60
            with conn.transaction():
                journal.append(conn, [Event("campaign.materialise_failed", row["id"], source="scheduler",
                                            detail={"error": str(exc)})])


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    while True:
        try:
            with psycopg.connect(Config.DATABASE_URL, autocommit=True, row_factory=dict_row) as conn:
                while not conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (LEADER_LOCK,)).fetchone()["ok"]:
                    time.sleep(INTERVAL * 5)  # another scheduler leads; wait to take over
                log.info("scheduler is the leader")
                watch = PurgeWatch()
                connected_at = conn.execute(q.scheduler_now).fetchone()["t"]
                while True:
                    tick(conn, watch, connected_at)
                    time.sleep(INTERVAL)
        except psycopg.OperationalError as exc:
            log.warning("database unavailable (%s); retrying", exc)
            time.sleep(2)


if __name__ == "__main__":
    main()
