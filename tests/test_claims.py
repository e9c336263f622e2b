"""Claims in flight live in delivery_claims, one row per dispatch batch (migration 014): the
scheduler finds a dead worker's claims there, never by scanning deliveries, and completion
reads the counters. These tests drive the SQL directly against the real PostgreSQL."""
import json
from datetime import datetime, timedelta, timezone

from app.db import pool, q
from app.services import campaign as campaigns

LONG_AGO = datetime.now(timezone.utc) - timedelta(hours=1)


def running_campaign(db, n: int, prefix: str) -> tuple[int, list[int]]:
    cid = db.execute("INSERT INTO campaigns (name, from_email, subject) VALUES (%s, 'a@example.org', 's') "
                     "RETURNING id", (prefix,)).fetchone()["id"]
    db.execute("UPDATE campaigns SET status = 'running' WHERE id = %s", (cid,))
    ids = [r["id"] for r in db.execute(
        "INSERT INTO deliveries (campaign_id, email) SELECT %s, %s || g || '@example.org' "
        "FROM generate_series(1, %s) g RETURNING id", (cid, prefix, n))]
    return cid, ids


def claim(ids, cid, claimed_by) -> list[dict]:
    with pool().connection() as conn:
        return conn.execute(q.delivery_claim, {"ids": ids, "campaign_id": cid, "claimed_by": claimed_by}).fetchall()


def mark_unknown(grace="30 minutes", dead_after="20 seconds", connected_at=LONG_AGO) -> list[dict]:
    with pool().connection() as conn:
        return conn.execute(q.scheduler_mark_unknown, {"grace": grace, "dead_after": dead_after,
                                                       "connected_at": connected_at}).fetchall()


def record(conn, ids, status, reply, claimed_by, cid):
    conn.execute(q.delivery_record_outcomes, {"claimed_by": claimed_by, "campaign_id": cid, "outcomes": json.dumps([
        {"id": i, "email": f"{i}@example.org", "status": status, "reply": reply, "message_id": None, "attempt": 1,
         "not_tried": 0, "wait_ms": None} for i in ids])})


def statuses(db, ids) -> dict:
    return {r["id"]: r["status"] for r in db.execute("SELECT id, status FROM deliveries WHERE id = ANY(%s)", (ids,))}


def test_a_claim_notes_its_ids_until_the_batch_settles(db):
    cid, ids = running_campaign(db, 30, "note")
    assert len(claim(ids[:10], cid, "w1/a")) == 10
    assert len(claim(ids[10:20], cid, "w1/a")) == 10  # the batch's next chunk joins its row
    assert claim(ids[:10], cid, "w2/b") == []  # already claimed: nothing, and no row for w2/b
    rows = db.execute("SELECT claimed_by, ids FROM delivery_claims WHERE campaign_id = %s", (cid,)).fetchall()
    assert rows == [{"claimed_by": "w1/a", "ids": ids[:20]}]
    with pool().connection() as conn:
        record(conn, ids[:19], "sent", "250 ok", "w1/a", cid)
        conn.execute(q.delivery_claim_release, {"claimed_by": "w1/a"})
    # One email was in flight when the batch broke off: its claim stays for the scheduler.
    assert db.execute("SELECT ids FROM delivery_claims WHERE campaign_id = %s", (cid,)).fetchone()["ids"] == ids[:20]
    with pool().connection() as conn:
        record(conn, ids[19:20], "sent", "250 ok", "w1/a", cid)
        conn.execute(q.delivery_claim_release, {"claimed_by": "w1/a"})
    assert db.execute("SELECT count(*) AS n FROM delivery_claims WHERE campaign_id = %s", (cid,)).fetchone()["n"] == 0


def test_a_dead_workers_claims_become_unknown_and_its_row_goes(db):
    cid, ids = running_campaign(db, 20, "dead")
    claim(ids[:10], cid, "gone-worker/x")
    claim(ids[10:], cid, "live-worker/y")
    db.execute("INSERT INTO worker_heartbeats (worker_id, host, pid) VALUES ('live-worker', 'h', 1)")
    db.execute("UPDATE deliveries SET claimed_at = now() - interval '1 minute' WHERE id = ANY(%s)", (ids,))
    db.execute("UPDATE delivery_claims SET claimed_at = now() - interval '2 minutes' WHERE campaign_id = %s", (cid,))

    # Right after the scheduler (re)connected, silence proves nothing: no verdict yet.
    assert mark_unknown(connected_at=datetime.now(timezone.utc)) == []
    marked = mark_unknown()
    assert sorted(r["id"] for r in marked) == ids[:10]
    assert set(statuses(db, ids[:10]).values()) == {"unknown"}
    assert set(statuses(db, ids[10:]).values()) == {"sending"}  # its worker beats: still in flight
    assert mark_unknown() == []  # nothing twice

    with pool().connection() as conn:
        conn.execute(q.scheduler_claims_prune)
    left = db.execute("SELECT claimed_by FROM delivery_claims WHERE campaign_id = %s", (cid,)).fetchall()
    assert left == [{"claimed_by": "live-worker/y"}]


def test_a_claim_older_than_any_send_is_unknown_even_with_a_live_worker(db):
    cid, ids = running_campaign(db, 10, "grace")
    claim(ids, cid, "slow-worker/z")
    db.execute("INSERT INTO worker_heartbeats (worker_id, host, pid) VALUES ('slow-worker', 'h', 1)")
    assert mark_unknown(grace="1 hour") == []
    db.execute("UPDATE deliveries SET claimed_at = now() - interval '2 hours' WHERE id = ANY(%s)", (ids[:4],))
    db.execute("UPDATE delivery_claims SET claimed_at = now() - interval '2 hours' WHERE campaign_id = %s", (cid,))
    assert sorted(r["id"] for r in mark_unknown(grace="1 hour")) == ids[:4]
    # The worker reports the truth later: the outcome still lands on an unknown delivery.
    with pool().connection() as conn:
        record(conn, ids, "sent", "250 ok", "slow-worker/z", cid)
    assert set(statuses(db, ids).values()) == {"sent"}
    events = db.execute("SELECT kind, detail, dedupe_key FROM journal WHERE campaign_id = %s ORDER BY id",
                        (cid,)).fetchall()
    assert [e["kind"] for e in events] == ["delivery.sent"] * 10
    assert events[0]["detail"] == {"attempt": 1, "reply": "250 ok", "message_id": None, "retry_in_ms": None}
    assert events[0]["dedupe_key"] == f"d{ids[0]}.a1.sent"
    with pool().connection() as conn:  # a commit retried after its answer was lost writes nothing twice
        record(conn, ids, "sent", "250 ok", "slow-worker/z", cid)
    assert db.execute("SELECT count(*) AS n FROM journal WHERE campaign_id = %s", (cid,)).fetchone()["n"] == 10


def test_completion_follows_the_counters_of_open_and_in_flight_deliveries(db):
    cid, ids = running_campaign(db, 6, "done")
    with pool().connection() as conn:
        assert not campaigns.complete_if_done(conn, cid)  # queued
    claim(ids, cid, "w/c")
    with pool().connection() as conn:
        assert not campaigns.complete_if_done(conn, cid)  # sending
        record(conn, ids[:5], "sent", "250 ok", "w/c", cid)
        assert not campaigns.complete_if_done(conn, cid)  # one still in flight
        conn.execute(q.campaign_counts_fold, {"id": cid})
        record(conn, ids[5:], "failed", "550 no", "w/c", cid)
        assert campaigns.complete_if_done(conn, cid)
    assert db.execute("SELECT status FROM campaigns WHERE id = %s", (cid,)).fetchone()["status"] == "completed"


def test_outcomes_with_a_lone_surrogate_still_record(db):
    """An address with a lone surrogate (a hand-published message) fails to build, and its
    outcome must still be written, not fail the commit at every retry."""
    from consumers.dispatch import Outcome, outcomes_json

    cid, ids = running_campaign(db, 1, "surrogate")
    claim(ids, cid, "w/s")
    outcome = Outcome({"d": ids[0], "to": "bad\ud800@example.org"}, 1, "failed", "could not be built: \udcff")
    with pool().connection() as conn:
        conn.execute(q.delivery_record_outcomes, {"outcomes": outcomes_json([outcome]), "claimed_by": "w/s",
                                                  "campaign_id": cid})
    assert statuses(db, ids) == {ids[0]: "failed"}
    event = db.execute("SELECT email, detail FROM journal WHERE delivery_id = %s", (ids[0],)).fetchone()
    assert event["email"] == "bad\ufffd@example.org" and event["detail"]["reply"].endswith("\ufffd")
