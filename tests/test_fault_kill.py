"""Fault test 1: kill -9 of a dispatch worker process in the middle of a 20,000-recipient
campaign, three times, restarting the workers each time. The campaign completes; nobody
receives an email twice; every `sent` delivery arrived; the emails a killed worker had
claimed are `unknown` (at most one claim chunk per thread), never resent on their own; and
once the manager settles them from the server's log, every recipient has exactly one email."""
import os
import signal

import pytest

from app.config import Config
from tests.conftest import wait_for
from tests.delivery_kit import assert_nothing_lost_nothing_doubled, deliveries, seed_campaign, start, wait_status

RECIPIENTS, PROCESSES, THREADS, KILLS = 20_000, 2, 8, 3
pytestmark = pytest.mark.timeout(900)  # about a minute on a quiet machine; a busy one needs more


def test_kill_9_three_times_mid_campaign(client, db, smtp, workers, services):
    workers.stop()
    current = workers.start_more(processes=PROCESSES, threads=THREADS)
    services("scheduler")
    cid = seed_campaign(db, RECIPIENTS, "kill")
    start(cid)
    for kill in range(KILLS):
        target = (kill + 1) * RECIPIENTS // (KILLS + 2)
        wait_for(lambda: smtp.count() >= target, timeout=300, message=f"{target} emails before kill {kill + 1}")
        pids = wait_for(current.child_pids, timeout=30, message="worker processes")
        os.kill(pids[0], signal.SIGKILL)
        current.proc.wait(timeout=120)  # Dramatiq stops the other worker process gracefully
        current = workers.start_more(processes=PROCESSES, threads=THREADS)

    wait_status(db, cid, "completed", timeout=600)
    counts = assert_nothing_lost_nothing_doubled(db, smtp, cid, allow_unknown=True)
    assert counts["sent"] + counts.get("unknown", 0) == RECIPIENTS
    assert counts.get("unknown", 0) <= KILLS * THREADS * Config.DISPATCH_CLAIM_CHUNK
    unknown_events = db.execute(
        "SELECT count(*) AS n FROM journal WHERE campaign_id = %s AND kind = 'delivery.unknown'", (cid,)).fetchone()["n"]
    assert unknown_events >= counts.get("unknown", 0)

    # The manager settles the unknown ones from the mail server's log: resend what did not
    # arrive (a single send each, ahead of any bulk work), mark the rest as sent.
    received = set(smtp.recipients())
    unknown = [r for r in deliveries(db, cid).values() if r["status"] == "unknown"]
    missing = [r for r in unknown if r["email"].lower() not in received]
    for row in missing:
        r = client.post(f"/campaigns/{cid}/unknown/resend?delivery={row['id']}", follow_redirects=True)
        assert b"queued to be sent again" in r.data
    if len(missing) < len(unknown):
        r = client.post(f"/campaigns/{cid}/unknown/mark-sent", follow_redirects=True)
        assert f"{len(unknown) - len(missing)} unknown".encode() in r.data
    wait_status(db, cid, "completed", timeout=120)
    assert assert_nothing_lost_nothing_doubled(db, smtp, cid) == {"sent": RECIPIENTS}
    assert sorted(smtp.recipients()) == sorted(deliveries(db, cid))  # each recipient exactly once
