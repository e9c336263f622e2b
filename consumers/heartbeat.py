"""Worker heartbeats: how the scheduler tells a dead worker's claims from a slow one's, and
campaign activity: how it tells a campaign with work in flight from one whose work was purged.

Each worker process writes `worker_heartbeats.seen_at` every HEARTBEAT_SECONDS and tags
its claims with its id. When a process dies (kill -9, OOM, power), its heartbeat stops and
the scheduler marks what it had claimed `unknown` after WORKER_DEAD_AFTER: shown, counted,
never resent without the manager's say.
"""
import logging
import os
import secrets
import socket
import threading
import time

from dramatiq.middleware import Middleware

from app.config import Config
from app.db import execute, q

log = logging.getLogger("heartbeat")
_ids: dict[int, str] = {}


def worker_id() -> str:
    """This process's id, made once per pid (a forked child gets its own)."""
    pid = os.getpid()
    if pid not in _ids:
        _ids[pid] = f"{socket.gethostname()}:{pid}:{secrets.token_hex(3)}"
    return _ids[pid]


def beat() -> None:
    execute(q.heartbeat_beat, {"worker_id": worker_id(), "host": socket.gethostname(), "pid": os.getpid()})


class Heartbeat(Middleware):
    def __init__(self):
        self._stop = threading.Event()

    def after_worker_boot(self, broker, worker):
        threading.Thread(target=self._run, name="heartbeat", daemon=True).start()

    def _run(self):
        while not self._stop.is_set():
            try:
                beat()
            except Exception as exc:  # the database may be restarting; the next beat will tell
                log.warning("heartbeat not written: %s", exc)
            self._stop.wait(Config.HEARTBEAT_SECONDS)

    def after_worker_shutdown(self, broker, worker):
        # Every thread has finished its message, so nothing is claimed by this process any more.
        self._stop.set()
        try:
            execute(q.heartbeat_forget, {"worker_id": worker_id()})
        except Exception as exc:
            log.warning("heartbeat not removed: %s", exc)


class Activity(Middleware):
    """Note in PostgreSQL that a worker picked up a message of a campaign (at most twice a
    second per process and campaign), before the actor runs: the purge watch
    (consumers/purge.py) takes it as progress."""

    ACTORS = {"enqueue_campaign", "prepare", "dispatch", "dispatch_urgent"}
    EVERY = 0.5

    def __init__(self):
        self._last: dict[int, float] = {}

    def before_process_message(self, broker, message):
        if message.actor_name not in self.ACTORS or not message.args:
            return
        campaign_id, now = message.args[0], time.monotonic()
        if now - self._last.get(campaign_id, 0.0) < self.EVERY:
            return
        self._last[campaign_id] = now
        try:
            execute(q.activity_touch, {"id": campaign_id})
        except Exception as exc:  # the actor itself will meet the same database and retry
            log.warning("campaign activity not written: %s", exc)
