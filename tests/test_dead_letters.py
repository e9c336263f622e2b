"""Dead letters from the manager's side: an email whose last retry failed is `dead`, listed
per campaign with its reason, and can be replayed (one, or all of a campaign) or discarded.
A replay sends again only a delivery that is still dead: one sent meanwhile sends nothing."""
from collections import Counter

from tests.conftest import wait_for
from tests.delivery_kit import assert_nothing_lost_nothing_doubled, deliveries, seed_campaign, start, wait_status

EMAILS = ["busy-0@example.com", "busy-1@example.com", "busy-2@example.com", "ok-0@example.com"]


def refuse_busy(rcpt, attempt):
    return "452 4.2.2 mailbox full, try later" if "busy" in rcpt else None


def letters(db, cid):
    return {r["email"]: r for r in db.execute("SELECT * FROM dead_letters WHERE campaign_id = %s", (cid,))}


def dead_campaign(db, smtp, prefix):
    smtp.behaviour = refuse_busy
    cid = seed_campaign(db, 0, prefix, max_attempts=2, emails=[f"{prefix}{e}" for e in EMAILS])
    start(cid)
    wait_status(db, cid, "completed", timeout=60)
    assert Counter(r["status"] for r in deliveries(db, cid).values()) == {"dead": 3, "sent": 1}
    return cid


def test_replay_one_then_all_and_a_replay_of_a_delivery_sent_meanwhile(client, db, smtp, workers, services):
    services("deadletters")
    services("scheduler")
    cid = dead_campaign(db, smtp, "dl")
    dead = wait_for(lambda: len(letters(db, cid)) == 3 and letters(db, cid), message="three dead letters")
    assert all("no delivery after 2 attempts: DATA: 452" in d["reason"] for d in dead.values())
    page = client.get(f"/dead-letters?campaign={cid}").get_data(as_text=True)
    assert page.count('class="link replay"') == 3 and "mailbox full" in page
    assert "3 open" in client.get(f"/campaigns/{cid}").get_data(as_text=True)

    smtp.behaviour = None  # the mailboxes have room again
    one = dead["dlbusy-0@example.com"]
    r = client.post(f"/dead-letters/{one['id']}/replay", follow_redirects=True)
    assert b"Replay: 1 sent again." in r.data
    wait_for(lambda: deliveries(db, cid)["dlbusy-0@example.com"]["status"] == "sent", message="replayed email sent")
    wait_status(db, cid, "completed")
    assert b"no longer open" in client.post(f"/dead-letters/{one['id']}/replay", follow_redirects=True).data
    row = deliveries(db, cid)["dlbusy-0@example.com"]
    assert row["attempts"] == 3 and row["attempt_floor"] == 2  # a fresh retry budget

    # Sent meanwhile (here: by hand, as a DBA might after delivering it another way): the
    # replay reopens nothing and sends nothing.
    db.execute("UPDATE deliveries SET status = 'sent' WHERE campaign_id = %s AND email = 'dlbusy-1@example.com'",
               (cid,))
    before = smtp.count()
    r = client.post(f"/campaigns/{cid}/dead-letters/replay", follow_redirects=True)
    assert b"1 sent again; 1 not sent because the delivery was already done" in r.data
    wait_for(lambda: deliveries(db, cid)["dlbusy-2@example.com"]["status"] == "sent", message="replay all")
    wait_status(db, cid, "completed")
    assert smtp.count() == before + 1
    assert Counter(smtp.recipients()) == {"dlok-0@example.com": 1, "dlbusy-0@example.com": 1,
                                          "dlbusy-2@example.com": 1}
    resolved = {e: d["resolution"] for e, d in letters(db, cid).items()}
    assert resolved == {"dlbusy-0@example.com": "sent again", "dlbusy-2@example.com": "sent again",
                        "dlbusy-1@example.com": "nothing sent: the delivery is sent"}
    kinds = Counter(r["kind"] for r in db.execute("SELECT kind FROM journal WHERE campaign_id = %s", (cid,)))
    assert kinds["deadletter.replayed"] == 2 and kinds["deadletter.replay_skipped"] == 1
    assert kinds["campaign.completed"] == 3  # finished, reopened by each replay, finished again
    everything = client.get(f"/dead-letters?campaign={cid}&status=all").get_data(as_text=True)
    assert everything.count('class="dl-replayed"') == 3 and 'class="link replay"' not in everything


def test_discard_and_replay_into_a_paused_campaign(client, db, smtp, workers, services):
    services("scheduler")
    cid = dead_campaign(db, smtp, "dp")
    dead = letters(db, cid)
    r = client.post(f"/dead-letters/{dead['dpbusy-0@example.com']['id']}/discard", follow_redirects=True)
    assert b"Dead letter discarded" in r.data
    assert deliveries(db, cid)["dpbusy-0@example.com"]["status"] == "dead"  # discarding sends nothing

    # A replay reopens a finished campaign; paused, it waits for the resume.
    smtp.behaviour = None
    with db.transaction():  # reopened and paused at once, before the scheduler can finish it again
        db.execute("UPDATE campaigns SET status = 'running' WHERE id = %s", (cid,))
        db.execute("UPDATE campaigns SET status = 'paused' WHERE id = %s", (cid,))
    r = client.post(f"/campaigns/{cid}/dead-letters/replay", follow_redirects=True)
    assert b"they go out when you resume it" in r.data
    assert {deliveries(db, cid)[e]["status"] for e in ("dpbusy-1@example.com", "dpbusy-2@example.com")} == {"retry"}
    client.post(f"/campaigns/{cid}/control/resume")
    wait_status(db, cid, "completed")
    counts = assert_nothing_lost_nothing_doubled(db, smtp, cid)
    assert counts == {"sent": 3, "dead": 1}
    assert client.post("/dead-letters/999999999/replay").status_code == 404
    assert client.post(f"/campaigns/{cid}/unknown/resend?delivery=abc").status_code == 400
    assert b"no unknown delivery" in client.post(f"/campaigns/{cid}/unknown/mark-sent", follow_redirects=True).data
    assert client.get("/dead-letters?campaign=abc").status_code == 400
    assert client.get("/dead-letters?status=everything").status_code == 400
    assert client.get(f"/dead-letters?campaign={2**63}").status_code == 400
