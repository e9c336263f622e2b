"""Fault test 5: ops purge `enqueue`, `prepare` and `dispatch` through the management HTTP
API in the middle of a campaign. Sending stops within the stated bound (what workers had
prefetched), the scheduler notices the purge and stops the campaign with exact counts, and
a resume sends every remaining recipient exactly once."""
import os

from tests.conftest import wait_for
from tests.delivery_kit import (assert_nothing_lost_nothing_doubled, deliveries, purge, seed_campaign, start,
                                wait_status)

PROCESSES, PREFETCH, BATCH, PAGES = 1, 2, 20, 10
# The README's bound: each worker process holds at most PREFETCH messages of each queue, and
# a message carries at most PREPARE_BATCH emails (prepare's become dispatch's after the purge);
# an enqueue piece in flight still publishes up to ENQUEUE_PAGES batches.
BOUND = PROCESSES * PREFETCH * 2 * BATCH + PAGES * BATCH


def test_purge_stops_sending_then_resume_sends_the_rest_once(client, db, smtp, workers, services):
    env = {"SMTP_URLS": os.environ["SMTP_URL"] + "&rate=200", "dramatiq_queue_prefetch": str(PREFETCH),
           "PREPARE_BATCH": str(BATCH), "ENQUEUE_PAGES": str(PAGES)}
    workers.stop()
    workers.start_more(processes=PROCESSES, extra_env=env)
    services("scheduler", extra_env={"PREPARE_BATCH": str(BATCH)})
    cid = seed_campaign(db, 2000, "purge")
    start(cid)
    wait_for(lambda: smtp.count() >= 150, message="campaign under way")
    for queue in ("enqueue", "prepare", "dispatch"):  # the README's order
        purge(queue)
    at_purge = smtp.count()

    wait_status(db, cid, "stopped", timeout=60)
    after_purge = smtp.count() - at_purge
    assert after_purge <= BOUND, f"{after_purge} emails went out after the purge (bound {BOUND})"
    event = db.execute("SELECT source, detail FROM journal WHERE campaign_id = %s AND kind = 'purge.detected'",
                       (cid,)).fetchone()
    assert event["source"] == "scheduler"
    rows = deliveries(db, cid).values()
    sent = sum(1 for r in rows if r["status"] == "sent")
    assert sent == smtp.count() < 2000  # every email that went out is recorded, no more
    assert event["detail"]["counts"] == {"sent": sent, "queued": 2000 - sent}  # exact counts
    stopped = db.execute("SELECT source, detail FROM journal WHERE campaign_id = %s AND kind = 'campaign.stopped'",
                         (cid,)).fetchone()
    assert stopped["source"] == "scheduler" and stopped["detail"]["reason"] == "purge detected"

    r = client.post(f"/campaigns/{cid}/control/resume", follow_redirects=True)
    assert b"Resumed" in r.data
    wait_status(db, cid, "completed", timeout=120)
    assert assert_nothing_lost_nothing_doubled(db, smtp, cid) == {"sent": 2000}
    assert smtp.count() == 2000
