"""At most once: a duplicated, redelivered or stray dispatch message for deliveries that are
no longer open is acknowledged and dropped, sends nothing, and is journaled as dropped."""
import os
from collections import Counter

from consumers.dispatch import dispatch
from tests.conftest import wait_for
from tests.delivery_kit import assert_nothing_lost_nothing_doubled, deliveries, publish, seed_campaign, start, wait_status


def copy_of(cid, rows) -> bytes:
    """A dispatch message for these deliveries, as a shovel or a careless publish would send it."""
    emails = [{"d": r["id"], "to": r["email"], "n": "", "s": "again", "h": "<p>again</p>", "t": "again", "u": None}
              for r in rows]
    return dispatch.message(cid, emails).encode()


def dropped(db, cid) -> Counter:
    return Counter(r["email"] for r in db.execute(
        "SELECT email FROM journal WHERE campaign_id = %s AND kind = 'delivery.duplicate_dropped'", (cid,)))


def test_duplicates_during_and_after_a_campaign_send_nothing(db, smtp, workers, services):
    workers.stop()
    workers.start_more(extra_env={"SMTP_URLS": os.environ["SMTP_URL"] + "&rate=50"})
    services("scheduler")
    cid = seed_campaign(db, 150, "dup")
    start(cid)
    sent = wait_for(lambda: (lambda rows: len(rows) >= 10 and rows)(
        [r for r in deliveries(db, cid).values() if r["status"] == "sent"]), message="the first sends")
    body = copy_of(cid, sent[:10])
    publish("dispatch", body)  # the same message twice: a duplicate of a duplicate
    publish("dispatch", body)
    wait_for(lambda: len(dropped(db, cid)) == 10, timeout=60, message="duplicates journaled")
    wait_status(db, cid, "completed", timeout=120)

    others = [r for r in deliveries(db, cid).values() if r["email"] not in dropped(db, cid)][:5]
    publish("dispatch", copy_of(cid, others))  # after the end
    wait_for(lambda: len(dropped(db, cid)) == 15, timeout=60, message="late duplicates journaled")
    assert assert_nothing_lost_nothing_doubled(db, smtp, cid) == {"sent": 150}
    assert smtp.count() == 150 and "again" not in {m["Subject"] for m in smtp.parsed()}
    # Two copies of one message are one message id: journaled once, not twice.
    assert set(dropped(db, cid).values()) == {1}
