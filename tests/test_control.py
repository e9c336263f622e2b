"""Fault test 6: pause then resume, and stop (then resume), from the campaign page and from a
console-style publish to `campaign.control`; and every kind of bad console body journaled and
rejected while the consumer keeps working."""
import json
import os
import time

from tests.conftest import wait_for
from tests.delivery_kit import (assert_nothing_lost_nothing_doubled, console, deliveries, publish, seed_campaign,
                                start, status, wait_status)

RATE = 60  # emails per second per worker process: slow enough to act mid-campaign


def slow_workers(workers):
    workers.stop()
    workers.start_more(extra_env={"SMTP_URLS": os.environ["SMTP_URL"] + f"&rate={RATE}"})


def settled(db, smtp, cid) -> int:
    """Once paused or stopped, nothing more arrives and nothing stays claimed."""
    wait_for(lambda: not [r for r in deliveries(db, cid).values() if r["status"] == "sending"],
             timeout=10, message="claims handed back")
    time.sleep(1.5)  # longer than the workers' state cache and one email
    before = smtp.count()
    time.sleep(2)
    assert smtp.count() == before, "emails kept going out after the campaign stopped sending"
    sent = sum(1 for r in deliveries(db, cid).values() if r["status"] == "sent")
    assert sent == before  # the database says exactly what went out
    return sent


def events(db, cid, kind):
    return db.execute("SELECT source, detail FROM journal WHERE campaign_id = %s AND kind = %s ORDER BY id",
                      (cid, kind)).fetchall()


def ui(client, cid, action):
    return client.post(f"/campaigns/{cid}/control/{action}", follow_redirects=True)


def test_pause_resume_and_stop_from_the_campaign_page(client, db, smtp, workers, services):
    slow_workers(workers)
    services("scheduler")
    cid = seed_campaign(db, 300, "uictl")
    assert client.post(f"/campaigns/{cid}/send").status_code == 302
    wait_for(lambda: smtp.count() >= 40, message="sending under way")
    r = ui(client, cid, "pause")
    assert b"emails not sent are kept as not sent" in r.data and status(db, cid) == "paused"
    assert b'id="resume-button"' in r.data and b'id="pause-button"' not in r.data
    sent = settled(db, smtp, cid)
    assert 40 <= sent < 300
    assert b"already paused" in ui(client, cid, "pause").data  # pressing twice changes nothing

    r = ui(client, cid, "resume")
    assert b"Resumed" in r.data
    wait_status(db, cid, "completed")
    assert assert_nothing_lost_nothing_doubled(db, smtp, cid) == {"sent": 300}
    paused, running = events(db, cid, "campaign.paused"), events(db, cid, "campaign.running")
    assert [e["source"] for e in paused] == ["ui"] and paused[0]["detail"]["counts"]["sent"] > 0
    assert [(e["source"], e["detail"].get("action")) for e in running] == [("ui", None), ("ui", "resume")]
    assert [e["source"] for e in events(db, cid, "control.noop")] == ["ui"]

    # Stop: what was not sent stays recorded as not sent; a resume sends exactly that.
    smtp.reset()
    cid = seed_campaign(db, 300, "uistop")
    start(cid)
    wait_for(lambda: smtp.count() >= 40, message="sending under way")
    assert b"kept as not sent" in ui(client, cid, "stop").data
    sent = settled(db, smtp, cid)
    rows = deliveries(db, cid).values()
    assert sum(1 for r in rows if r["status"] in ("queued", "retry")) == 300 - sent
    stopped = events(db, cid, "campaign.stopped")
    at_stop = stopped[0]["detail"]["counts"]  # emails in flight at that instant were `sending`
    assert stopped[0]["source"] == "ui" and at_stop["sent"] <= sent <= at_stop["sent"] + at_stop.get("sending", 0)
    assert b"cannot be paused" in ui(client, cid, "pause").data  # a stopped campaign does not pause
    assert events(db, cid, "control.refused")[0]["detail"]["reason"] == "a stopped campaign cannot be paused"
    ui(client, cid, "resume")
    wait_status(db, cid, "completed")
    assert assert_nothing_lost_nothing_doubled(db, smtp, cid) == {"sent": 300}
    assert client.post(f"/campaigns/{cid}/control/explode").status_code == 404


def test_pause_resume_and_stop_from_the_console(db, smtp, workers, services):
    slow_workers(workers)
    services("scheduler")
    control = services("control")
    cid = seed_campaign(db, 300, "conctl")
    start(cid)
    wait_for(lambda: smtp.count() >= 40, message="sending under way")
    console(cid, "pause")
    wait_status(db, cid, "paused", timeout=20)
    settled(db, smtp, cid)
    console(str(cid), " Resume ", routing_key="ops.resume")  # a quoted number and loose case are fine
    wait_status(db, cid, "completed")
    assert assert_nothing_lost_nothing_doubled(db, smtp, cid) == {"sent": 300}
    paused = events(db, cid, "campaign.paused")
    assert paused[0]["source"] == "console" and paused[0]["detail"]["console"]["routing_key"] == "campaign.any"
    assert events(db, cid, "campaign.running")[-1]["source"] == "console"

    smtp.reset()
    other = seed_campaign(db, 300, "constop")
    start(other)
    wait_for(lambda: smtp.count() >= 40, message="sending under way")
    console(other, "stop")
    wait_status(db, other, "stopped", timeout=20)
    sent = settled(db, smtp, other)
    at_stop = events(db, other, "campaign.stopped")[0]["detail"]["counts"]
    assert at_stop["sent"] <= sent <= at_stop["sent"] + at_stop.get("sending", 0)

    # Bad bodies: each journaled with its reason and rejected; the consumer keeps going.
    bad = [
        (b"pause campaign 12 please", "not JSON"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b'["pause", 12]', "must be a JSON object"),
        (json.dumps({"campaign": 99_999_999, "action": "pause"}).encode(), "no campaign 99999999"),
        (json.dumps({"campaign": other, "action": "explode"}).encode(), '"action" must be one of'),
        (json.dumps({"campaign": True, "action": "pause"}).encode(), '"campaign" must be a campaign number'),
        (json.dumps({"campaign": 2**70, "action": "pause"}).encode(), '"campaign" must be a campaign number'),
        (json.dumps({"campaign": other, "action": "stop", "pad": "x" * 100_000}).encode(), "over the limit"),
        (b"[" * 3000, "not JSON"),
    ]
    for body, _ in bad:
        publish("campaign.bad", body, exchange="campaign.control")
    console(cid, "pause")  # illegal: the campaign is completed
    rejected = wait_for(lambda: (lambda rows: len(rows) == len(bad) and rows)(db.execute(
        "SELECT detail FROM journal WHERE kind = 'control.rejected' ORDER BY id").fetchall()),
        timeout=30, message="every bad body journaled")
    for (_, reason), row in zip(bad, rejected):
        assert reason in row["detail"]["reason"], (reason, row["detail"]["reason"])
    refused = wait_for(lambda: events(db, cid, "control.refused"), timeout=20, message="illegal pause refused")
    assert refused[0]["source"] == "console" and "completed campaign cannot be paused" in refused[0]["detail"]["reason"]
    assert status(db, cid) == "completed" and control.alive()

    console(other, "resume")  # and it still obeys
    wait_status(db, other, "completed")
    assert assert_nothing_lost_nothing_doubled(db, smtp, other) == {"sent": 300}
    assert control.alive()
