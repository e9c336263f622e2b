"""Fault test 4: a programmable SMTP server answering 421, 451-then-250, 550, 554, dropping
the connection mid-DATA, and down for 20 seconds. Every address ends in the right state
with the right attempt count, and the server received each accepted email exactly once."""
import os
from collections import Counter

from tests.conftest import wait_for
from tests.delivery_kit import (assert_nothing_lost_nothing_doubled, deliveries, kinds, seed_campaign, start,
                                wait_status)

OUTCOME_KINDS = ("delivery.sent", "delivery.retry", "delivery.failed", "delivery.dead")


def outcome_events(db, cid) -> Counter:
    rows = db.execute("SELECT email FROM journal WHERE campaign_id = %s AND kind = ANY(%s)",
                      (cid, list(OUTCOME_KINDS))).fetchall()
    return Counter(r["email"].lower() for r in rows)


def behaviour(rcpt: str, attempt: int):
    kind = rcpt.split("-", 1)[0]
    if kind == "greylist" and attempt == 1:
        return "451 4.7.1 greylisted, try again later"
    if kind == "busy":
        return "421 4.3.2 too busy, closing"
    if kind == "unknown":
        return "550 5.1.1 no such user here"
    if kind == "refused":
        return "554 5.7.1 message refused"
    if kind == "drop" and attempt == 1:
        return "drop"
    return None


def test_each_reply_ends_in_its_state_with_its_attempts(db, smtp, workers, services):
    services("scheduler")
    services("deadletters")
    smtp.behaviour = behaviour
    groups = {"ok": 6, "greylist": 3, "busy": 2, "unknown": 2, "refused": 1, "drop": 2}
    emails = [f"{kind}-{i}@example.com" for kind, n in groups.items() for i in range(n)]
    cid = seed_campaign(db, 0, "smtpfault", max_attempts=4, emails=emails)
    start(cid)
    wait_status(db, cid, "completed", timeout=120)

    rows = deliveries(db, cid)
    got = Counter(smtp.recipients())
    expected = {"ok": ("sent", 1), "greylist": ("sent", 2), "busy": ("dead", 4), "unknown": ("failed", 1),
                "refused": ("failed", 1), "drop": ("sent", 2)}
    events = outcome_events(db, cid)
    for address, row in rows.items():
        status, attempts = expected[address.split("-", 1)[0]]
        assert (row["status"], row["attempts"]) == (status, attempts), address
        assert smtp.attempts[address] == attempts, address  # the server saw every attempt
        assert events[address] == attempts, address  # and the journal has each one
        assert got[address] == (1 if status == "sent" else 0), address
    assert_nothing_lost_nothing_doubled(db, smtp, cid)

    assert rows["greylist-0@example.com"]["smtp_reply"].startswith("250")
    assert "451" not in (rows["greylist-0@example.com"]["last_error"] or "")
    assert "421" in rows["busy-0@example.com"]["last_error"]
    assert "dropped during DATA" in db.execute(
        "SELECT detail->>'reply' AS r FROM journal WHERE kind = 'delivery.retry' AND email = %s",
        ("drop-0@example.com",)).fetchone()["r"]

    # 550 "no such user": suppressed and bounced; a plain 554 is not.
    suppressed = {r["email"] for r in db.execute("SELECT email FROM suppressions")}
    assert {"unknown-0@example.com", "unknown-1@example.com"} <= suppressed
    assert "refused-0@example.com" not in suppressed
    statuses = {r["email"]: r["status"] for r in db.execute(
        "SELECT email, status FROM contacts WHERE email LIKE 'unknown-%%' OR email LIKE 'refused-%%'")}
    assert statuses == {"unknown-0@example.com": "bounced", "unknown-1@example.com": "bounced",
                        "refused-0@example.com": "subscribed"}

    # After the last retry: dead, one dead letter each (the XQ copy the keeper reads is the
    # same letter, recorded once), with the reason.
    letters = db.execute("SELECT email, reason, queue_name, status FROM dead_letters WHERE campaign_id = %s "
                         "ORDER BY email", (cid,)).fetchall()
    assert [r["email"] for r in letters] == ["busy-0@example.com", "busy-1@example.com"]
    assert all("after 4 attempts" in r["reason"] and "421" in r["reason"] for r in letters)
    assert {r["queue_name"] for r in letters} == {"dispatch"}
    k = kinds(db, cid)
    assert k["delivery.dead"] == 2 and k["suppression.added"] == 2 and k["delivery.retry"] == 3 + 2 * 3 + 2


def test_server_down_for_20_seconds_mid_campaign(db, smtp, workers, services):
    """Connections refused for 20 s: the circuit rests the server, emails wait (deferred, no
    attempt spent) or retry with backoff, and all arrive once it listens again."""
    workers.stop()
    workers.start_more(extra_env={"SMTP_URLS": os.environ["SMTP_URL"] + "&rate=15"})
    services("scheduler")
    cid = seed_campaign(db, 60, "down", max_attempts=15)
    start(cid)
    wait_for(lambda: smtp.count() >= 10, timeout=60, message="the first emails")
    smtp.refuse_for(20)
    wait_status(db, cid, "completed", timeout=150)

    counts = assert_nothing_lost_nothing_doubled(db, smtp, cid)
    assert counts == {"sent": 60}
    rows = deliveries(db, cid)
    events = outcome_events(db, cid)
    for address, row in rows.items():
        assert events[address] == row["attempts"], address  # attempts = retries journaled + the send
        assert smtp.attempts[address] == 1, address
    assert any(r["attempts"] > 1 for r in rows.values())  # the outage cost some of them an attempt
    k = kinds(db, cid)
    assert k["smtp.failover"] >= 1 and k["delivery.deferred"] >= 1
    assert "cannot connect" in db.execute(
        "SELECT detail->>'reply' AS r FROM journal WHERE campaign_id = %s AND kind = 'delivery.retry' "
        "ORDER BY id LIMIT 1", (cid,)).fetchone()["r"]
