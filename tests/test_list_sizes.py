"""List sizes come from counters kept by triggers (migration 008): they must always equal a
real count, whatever changed the members (inserts, duplicates, deletes, cascades, moves)."""
from app.db import fetchall, q


def sizes(db) -> dict[int, tuple[int, int]]:
    """list id -> (size shown by list_all, real count of members)."""
    real = {r["list_id"]: r["n"] for r in db.execute(
        "SELECT list_id, count(*) AS n FROM list_members GROUP BY list_id")}
    return {r["id"]: (r["members"], real.get(r["id"], 0)) for r in fetchall(q.list_all)}


def test_list_sizes_follow_every_change_to_members(db):
    a = db.execute("INSERT INTO lists (name) VALUES ('sizes A') RETURNING id").fetchone()["id"]
    b = db.execute("INSERT INTO lists (name) VALUES ('sizes B') RETURNING id").fetchone()["id"]
    ids = [r["id"] for r in db.execute(
        "INSERT INTO contacts (email) SELECT format('size%s@example.org', g) FROM generate_series(1, 30) g "
        "RETURNING id")]
    db.execute("INSERT INTO list_members (list_id, contact_id) SELECT %s, unnest(%s::bigint[])", (a, ids))
    db.execute("INSERT INTO list_members (list_id, contact_id) SELECT %s, unnest(%s::bigint[]) "
               "ON CONFLICT DO NOTHING", (a, ids[:10]))  # duplicates add nothing
    db.execute("INSERT INTO list_members (list_id, contact_id) SELECT %s, unnest(%s::bigint[])", (b, ids[:5]))
    assert sizes(db)[a] == (30, 30) and sizes(db)[b] == (5, 5)

    db.execute("DELETE FROM list_members WHERE list_id = %s AND contact_id = ANY(%s)", (a, ids[20:]))
    db.execute("DELETE FROM contacts WHERE id = ANY(%s)", (ids[:3],))  # cascades into both lists
    db.execute("UPDATE list_members SET list_id = %s WHERE list_id = %s AND contact_id = ANY(%s)",
               (b, a, ids[10:15]))  # moved from A to B
    shown = sizes(db)
    assert shown[a] == (12, 12) and shown[b] == (7, 7)

    db.execute("DELETE FROM lists WHERE id = %s", (b,))  # its members and counters go with it
    shown = sizes(db)
    assert b not in shown and shown[a] == (12, 12)
    db.execute("DELETE FROM contacts WHERE id = ANY(%s)", (ids,))
    db.execute("DELETE FROM lists WHERE id = %s", (a,))
