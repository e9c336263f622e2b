"""Single sends go ahead of bulk work: with a campaign's thousand emails queued, a replayed
dead letter (the `urgent` queue, first pick of a worker thread) arrives while most of the
bulk is still waiting, and a test send (sent from the request itself) does not wait at all."""
import os

from tests.conftest import wait_for
from tests.delivery_kit import deliveries, seed_campaign, start, wait_status


def open_count(db, cid) -> int:
    return sum(1 for r in deliveries(db, cid).values() if r["status"] in ("queued", "retry", "sending"))


def test_single_sends_do_not_wait_behind_a_campaign(client, db, smtp, workers, services):
    workers.stop()
    workers.start_more(threads=2, extra_env={"SMTP_URLS": os.environ["SMTP_URL"] + "&rate=40"})
    services("scheduler")
    smtp.behaviour = lambda rcpt, attempt: "421 4.3.2 busy" if rcpt == "single@example.com" else None
    small = seed_campaign(db, 0, "single", max_attempts=1, emails=["single@example.com"])
    start(small)
    wait_status(db, small, "completed")
    letter = db.execute("SELECT id FROM dead_letters WHERE campaign_id = %s", (small,)).fetchone()["id"]
    smtp.behaviour = None

    bulk = seed_campaign(db, 1000, "bulk")
    start(bulk)
    wait_for(lambda: smtp.count() >= 20, message="bulk sending under way")
    r = client.post(f"/campaigns/{bulk}/test", data={"to": "tester@example.com"}, follow_redirects=True)
    assert b"Test sent to tester@example.com" in r.data
    client.post(f"/dead-letters/{letter}/replay")
    wait_for(lambda: "single@example.com" in smtp.recipients(), timeout=60, message="the replayed single send")
    assert open_count(db, bulk) > 500  # it went out while most of the bulk still waited
    assert "tester@example.com" in smtp.recipients()
    client.post(f"/campaigns/{bulk}/control/stop")
