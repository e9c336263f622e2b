"""Folding a campaign's count deltas (the scheduler does it every tick) never changes a count,
and leaves one row per status however many statements moved deliveries."""
from app.db import pool, q
from app.services import campaign as campaigns


def test_folding_keeps_counts_and_shrinks_the_deltas(db):
    list_id = db.execute("INSERT INTO lists (name) VALUES ('fold') RETURNING id").fetchone()["id"]
    cid = db.execute("INSERT INTO campaigns (name, from_email, subject, list_id) VALUES "
                     "('fold', 'a@example.org', 's', %s) RETURNING id", (list_id,)).fetchone()["id"]
    ids = [r["id"] for r in db.execute(
        "INSERT INTO deliveries (campaign_id, email) SELECT %s, format('fold%%s@example.org', g) "
        "FROM generate_series(1, 60) g RETURNING id", (cid,))]
    for i in range(0, 50, 5):  # claims and outcomes in small chunks, as dispatch writes them
        db.execute("UPDATE deliveries SET status = 'sending' WHERE id = ANY(%s)", (ids[i:i + 5],))
        db.execute("UPDATE deliveries SET status = %s WHERE id = ANY(%s)",
                   ("sent" if i % 10 else "failed", ids[i:i + 5]))
    before = campaigns.counts(cid)
    assert before == {"queued": 10, "sent": 25, "failed": 25, "total": 60, "open": 10}
    rows = lambda: db.execute("SELECT count(*) AS n FROM delivery_counts WHERE campaign_id = %s",  # noqa: E731
                              (cid,)).fetchone()["n"]
    assert rows() > 20

    with pool().connection() as conn:
        conn.execute(q.campaign_counts_fold, {"id": cid})
    assert campaigns.counts(cid) == before
    assert rows() == 3  # queued, sent, failed

    db.execute("UPDATE deliveries SET status = 'sent' WHERE id = ANY(%s)", (ids[50:],))
    with pool().connection() as conn:
        conn.execute(q.campaign_counts_fold, {"id": cid})
        conn.execute(q.campaign_counts_fold, {"id": cid})  # folding folded rows changes nothing
    assert campaigns.counts(cid) == {"sent": 35, "failed": 25, "total": 60, "open": 0}
    assert rows() == 2
    db.execute("DELETE FROM campaigns WHERE id = %s", (cid,))
