"""Issue 5, the contacts page: search and filters with keyset pages, editing one contact, bulk
actions on a selection or a whole filter, the CSV export, and the data-protection pair
(one contact's data as JSON, erasure) against the real PostgreSQL."""
import csv
import io
import json
import re
import secrets
from html import unescape

import psycopg
import pytest

ROW = re.compile(r'<a href="/contacts/(\d+)">([^<]+)</a>')
ALERT = re.compile(r'role="alert"[^>]*>(.*?)</', re.S)


def alerts(r) -> list[str]:
    return [unescape(m).strip() for m in ALERT.findall(r.get_data(as_text=True))]


def shown(r) -> list[str]:
    """The addresses on a contacts page, in order."""
    return [unescape(email) for _, email in ROW.findall(r.get_data(as_text=True))]


def link(r, element_id) -> str | None:
    m = re.search(rf'href="([^"]+)" id="{element_id}"', r.get_data(as_text=True))
    return unescape(m.group(1)) if m else None


@pytest.fixture
def tag():
    """A tag of this test's own: the contacts table is shared by the whole session."""
    return "t" + secrets.token_hex(4)


def make(db, tag, n, **extra) -> list[int]:
    return [r["id"] for r in db.execute(
        "INSERT INTO contacts (email, name, status, attributes, tags) "
        "SELECT %(tag)s || '-' || i || '@example.com', 'Person ' || i, "
        "       (ARRAY['subscribed', 'unsubscribed', 'bounced'])[1 + i %% 3], "
        "       jsonb_build_object('city', (ARRAY['Oslo', 'Lima'])[1 + i %% 2], 'n', i), ARRAY[%(tag)s] "
        "FROM generate_series(1, %(n)s) AS i ORDER BY i RETURNING id", {"tag": tag, "n": n})]


def test_keyset_pages_walk_a_filter_without_gaps_or_repeats(client, db, tag):
    make(db, tag, 120)
    r = client.get(f"/contacts?tag={tag}")
    assert "120 contacts match." in unescape(r.get_data(as_text=True))
    seen, pages = [], 0
    first = shown(r)
    while r is not None:
        page = shown(r)
        seen += page
        pages += 1
        nxt = link(r, "older-page")
        r = client.get(nxt) if nxt else None
    assert pages == 3 and len(seen) == 120 == len(set(seen))
    assert seen == [f"{tag}-{i}@example.com" for i in range(120, 0, -1)]  # newest first
    second = client.get(link(client.get(f"/contacts?tag={tag}"), "older-page"))
    back = client.get(link(second, "newer-page"))
    assert shown(back) == first and link(back, "newer-page") is None


@pytest.mark.parametrize("query,expected", [
    ("q={tag}-7@", ["{tag}-7@example.com"]),
    ("q=Person 11", ["{tag}-11@example.com"]),
    ("q=Person 1", ["{tag}-1@example.com", "{tag}-10@example.com", "{tag}-11@example.com", "{tag}-12@example.com"]),
    ("q=city=Lima", ["{tag}-1@example.com", "{tag}-3@example.com", "{tag}-5@example.com", "{tag}-7@example.com",
                     "{tag}-9@example.com", "{tag}-11@example.com"]),
    ("q=n=4", ["{tag}-4@example.com"]),
    ("q=Lima", []),  # free text is the email and the name; attributes are searched as key=value
    ("q=%25", []),  # a LIKE wildcard is searched for, not used
    ("q=_", []),
    ("status=bounced", ["{tag}-2@example.com", "{tag}-5@example.com", "{tag}-8@example.com", "{tag}-11@example.com"]),
    ("status=nonsense", None),  # an unknown status is no filter
])
def test_search_by_email_name_and_attribute_and_filter_by_status(client, db, tag, query, expected):
    make(db, tag, 12)
    r = client.get(f"/contacts?tag={tag}&{query.format(tag=tag)}")
    assert r.status_code == 200
    got = shown(r)
    if expected is None:
        assert len(got) == 12
    else:
        assert sorted(got) == sorted(e.format(tag=tag) for e in expected)


def test_filter_by_list(client, db, tag):
    ids = make(db, tag, 6)
    list_id = db.execute("INSERT INTO lists (name) VALUES (%s) RETURNING id", (tag,)).fetchone()["id"]
    db.execute("INSERT INTO list_members (list_id, contact_id) SELECT %s, unnest(%s::bigint[])", (list_id, ids[:2]))
    assert sorted(shown(client.get(f"/contacts?list={list_id}"))) == [f"{tag}-1@example.com", f"{tag}-2@example.com"]
    assert client.get("/contacts?list=99999999999999999999999").status_code == 200


def test_edit_one_contact(client, db, tag):
    a, b = make(db, tag, 2)
    list_id = db.execute("INSERT INTO lists (name) VALUES (%s) RETURNING id", (tag,)).fetchone()["id"]
    r = client.get(f"/contacts/{a}")
    assert r.status_code == 200 and f"{tag}-1@example.com" in r.get_data(as_text=True)
    form = {"email": f"{tag}-NEW@Example.com", "name": " New Name ", "status": "unsubscribed", "tags": "x, y, x, ",
            "attributes": '{"city": "Bergen", "vip": true}', "lists": [str(list_id)]}
    r = client.post(f"/contacts/{a}", data=form)
    assert r.status_code == 302
    row = db.execute("SELECT * FROM contacts WHERE id = %s", (a,)).fetchone()
    assert (row["email"], row["name"], row["status"], row["tags"]) == (f"{tag}-NEW@example.com", "New Name",
                                                                       "unsubscribed", ["x", "y"])
    assert row["attributes"] == {"city": "Bergen", "vip": True}
    assert db.execute("SELECT list_id FROM list_members WHERE contact_id = %s", (a,)).fetchall() == [{"list_id": list_id}]
    # Another contact's address, broken JSON, a bad status: each refused with its reason, nothing saved.
    for change, message in ((dict(email=f"{tag}-2@example.com"), "another contact has this address"),
                            (dict(attributes="{city"), "attributes are not valid JSON"),
                            (dict(status="deleted"), "Not a valid choice"),
                            (dict(email="not an address"), "not a valid email address"),
                            (dict(tags="t" * 101), "a tag can have at most 100 characters")):
        r = client.post(f"/contacts/{a}", data={**form, **change})
        assert r.status_code == 400 and any(message in m for m in alerts(r)), (change, alerts(r))
    assert db.execute("SELECT * FROM contacts WHERE id = %s", (a,)).fetchone() == row
    form["lists"] = []
    client.post(f"/contacts/{a}", data=form)
    assert db.execute("SELECT count(*) AS n FROM list_members WHERE contact_id = %s", (a,)).fetchone()["n"] == 0
    assert client.get("/contacts/999999999").status_code == 404


def test_bulk_actions_on_a_selection_and_on_a_whole_filter(client, db, tag):
    ids = make(db, tag, 9)
    list_id = db.execute("INSERT INTO lists (name) VALUES (%s) RETURNING id", (tag,)).fetchone()["id"]

    def bulk(query, **form):
        r = client.post(f"/contacts/bulk?{query}", data=form, follow_redirects=True)
        assert r.status_code == 200
        return alerts(r)

    def members():
        return {r["contact_id"] for r in db.execute("SELECT contact_id FROM list_members WHERE list_id = %s", (list_id,))}

    said = bulk(f"tag={tag}", action="add_list", scope="selected", list_id=list_id, ids=[str(ids[0]), str(ids[1])])
    assert "Add to list: 2 contact(s) changed." in said and members() == set(ids[:2])
    said = bulk(f"tag={tag}&status=bounced", action="add_list", scope="filter", list_id=list_id)
    assert members() == set(ids[:2]) | {ids[1], ids[4], ids[7]}
    bulk(f"tag={tag}", action="add_tag", scope="filter", tag="vip")
    assert all("vip" in r["tags"] for r in db.execute("SELECT tags FROM contacts WHERE %s = ANY(tags)", (tag,)))
    bulk(f"tag={tag}&q=city=Oslo", action="remove_tag", scope="filter", tag="vip")
    assert db.execute("SELECT count(*) AS n FROM contacts WHERE 'vip' = ANY(tags) AND %s = ANY(tags)",
                      (tag,)).fetchone()["n"] == 5  # the odd ones live in Lima
    bulk(f"list={list_id}", action="remove_list", scope="filter", list_id=list_id)
    assert members() == set()
    assert bulk("", action="add_list", scope="selected", ids=[str(ids[0])]) == ["Nothing changed: choose the list."]
    assert bulk("", action="add_tag", scope="selected", tag=" ", ids=[str(ids[0])]) == ["Nothing changed: give the tag."]
    assert "Set a filter first" in bulk("", action="delete", scope="filter")[0]
    r = client.post("/contacts/bulk", data={"action": "delete", "scope": "selected", "ids": ["1", "x"]})
    assert r.status_code == 400
    said = bulk(f"tag={tag}&status=unsubscribed", action="delete", scope="filter")
    assert "Delete: 3 contact(s) changed." in said
    assert db.execute("SELECT count(*) AS n FROM contacts WHERE %s = ANY(tags)", (tag,)).fetchone()["n"] == 6
    assert db.execute("SELECT detail FROM journal WHERE kind = 'contacts.deleted' ORDER BY id DESC LIMIT 1"
                      ).fetchone()["detail"]["count"] == 3


def test_export_streams_the_filter_as_spreadsheet_safe_csv(client, db, tag):
    db.execute("INSERT INTO contacts (email, name, attributes, tags) VALUES "
               "(%(t)s || '-a@example.com', '=HYPERLINK(\"http://evil\")', '{\"city\": \"Oslo\", \"n\": 5}', ARRAY[%(t)s]),"
               "(%(t)s || '-b@example.com', '+1 555', '{\"note\": \"-2\", \"at\": \"@SUM(A1)\"}', ARRAY[%(t)s, 'x']),"
               "(%(t)s || '-c@example.com', 'Plain, \"quoted\"', '{\"city\": \"Lima\"}', ARRAY[%(t)s])", {"t": tag})
    r = client.get(f"/contacts/export.csv?tag={tag}")
    assert r.status_code == 200 and r.mimetype == "text/csv" and r.is_streamed
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert list(rows[0]) == ["email", "name", "status", "tags", "created_at", "updated_at", "at", "city", "n", "note"]
    by = {row["email"]: row for row in rows}
    assert set(by) == {f"{tag}-a@example.com", f"{tag}-b@example.com", f"{tag}-c@example.com"}
    assert by[f"{tag}-a@example.com"]["name"] == "'=HYPERLINK(\"http://evil\")"
    assert by[f"{tag}-a@example.com"]["n"] == "5" and by[f"{tag}-a@example.com"]["city"] == "Oslo"
    assert by[f"{tag}-b@example.com"]["name"] == "'+1 555"
    assert by[f"{tag}-b@example.com"]["note"] == "'-2" and by[f"{tag}-b@example.com"]["at"] == "'@SUM(A1)"
    assert by[f"{tag}-b@example.com"]["tags"] == f"{tag};x"
    assert by[f"{tag}-c@example.com"]["name"] == 'Plain, "quoted"'


def test_one_contacts_data_as_json_and_erasure(client, db, tag):
    (cid,) = make(db, tag, 1)
    email = f"{tag}-1@example.com"
    list_id = db.execute("INSERT INTO lists (name) VALUES (%s) RETURNING id", (tag,)).fetchone()["id"]
    db.execute("INSERT INTO list_members (list_id, contact_id) VALUES (%s, %s)", (list_id, cid))
    camp = db.execute("INSERT INTO campaigns (name, from_email, subject, status) VALUES ('erase', 'a@example.org', 's', "
                      "'draft') RETURNING id").fetchone()["id"]
    other = db.execute("INSERT INTO contacts (email) VALUES (%s) RETURNING id", (f"{tag}-other@example.com",)).fetchone()["id"]
    dids = [r["id"] for r in db.execute(
        "INSERT INTO deliveries (campaign_id, contact_id, email, status, smtp_reply) VALUES "
        "(%s, %s, %s, 'sent', '250 ok'), (%s, %s, %s, 'failed', '550 unknown') RETURNING id",
        (camp, cid, email.upper(), camp, other, f"{tag}-other@example.com"))]
    db.execute("INSERT INTO journal (campaign_id, delivery_id, email, kind, detail) VALUES "
               "(%s, %s, %s, 'delivery.sent', %s), (%s, NULL, %s, 'contact.unsubscribed', '{}')",
               (camp, dids[0], email, json.dumps({"reply": f"250 accepted <{email.upper()}>"}), camp, email))
    running = db.execute("INSERT INTO campaigns (name, from_email, subject, status) VALUES ('erase-running', "
                         "'a@example.org', 's', 'running') RETURNING id").fetchone()["id"]
    waiting = db.execute("INSERT INTO deliveries (campaign_id, contact_id, email) VALUES (%s, %s, %s) RETURNING id",
                         (running, cid, email)).fetchone()["id"]
    db.execute("INSERT INTO suppressions (email, reason) VALUES (%s, 'complaint')", (email,))
    counts_before = db.execute("SELECT status, sum(delta) AS n FROM delivery_counts WHERE campaign_id = %s "
                               "GROUP BY 1 ORDER BY 1", (camp,)).fetchall()

    r = client.get(f"/contacts/{cid}/export.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    data = json.loads(r.get_data(as_text=True))
    assert data["contact"]["email"] == email and data["contact"]["attributes"] == {"city": "Lima", "n": 1}
    assert [x["name"] for x in data["lists"]] == [tag]
    assert [d["status"] for d in data["deliveries"]] == ["sent", "queued"]
    assert {j["kind"] for j in data["journal"]} == {"delivery.sent", "contact.unsubscribed"}
    assert data["suppression"]["reason"] == "complaint"

    r = client.post(f"/contacts/{cid}/erase", data={"confirm": "someone-else@example.com"}, follow_redirects=True)
    assert "Not erased: type the contact's address exactly to confirm." in alerts(r)
    r = client.post(f"/contacts/{cid}/erase", data={"confirm": email.upper()}, follow_redirects=True)
    assert any(a.startswith("Erased.") for a in alerts(r))
    assert db.execute("SELECT 1 FROM contacts WHERE id = %s", (cid,)).fetchone() is None
    gone = db.execute("SELECT email, contact_id FROM deliveries WHERE id = %s", (dids[0],)).fetchone()
    assert gone["contact_id"] is None and gone["email"].startswith("erased-") and tag not in gone["email"]
    assert db.execute("SELECT email FROM deliveries WHERE id = %s", (dids[1],)).fetchone()["email"] == \
        f"{tag}-other@example.com"
    everything = json.dumps(db.execute(
        "SELECT (SELECT json_agg(j) FROM journal j) AS j, (SELECT json_agg(d) FROM deliveries d) AS d, "
        "(SELECT json_agg(s) FROM suppressions s) AS s").fetchone(), default=str).lower()
    assert f"{tag}-1@" not in everything
    assert db.execute("SELECT count(*) AS n FROM suppressions WHERE email = %s", (gone["email"],)).fetchone()["n"] == 1
    erased = db.execute("SELECT * FROM journal WHERE kind = 'contact.erased' ORDER BY id DESC LIMIT 1").fetchone()
    assert erased["email"] == gone["email"] and erased["detail"]["deliveries"] == 2 and erased["detail"]["journal"] == 2
    # The email still waiting in a running campaign fails instead of going to the hash.
    left = db.execute("SELECT status, last_error, email FROM deliveries WHERE id = %s", (waiting,)).fetchone()
    assert left == {"status": "failed", "last_error": "the contact was erased (data-protection request)",
                    "email": gone["email"]}
    assert db.execute("SELECT email FROM journal WHERE kind = 'delivery.failed' AND delivery_id = %s",
                      (waiting,)).fetchone()["email"] == gone["email"]
    assert db.execute("SELECT status FROM campaigns WHERE id = %s", (running,)).fetchone()["status"] == "completed"
    assert db.execute("SELECT status, sum(delta) AS n FROM delivery_counts WHERE campaign_id = %s GROUP BY 1 ORDER BY 1",
                      (camp,)).fetchall() == counts_before
    # The journal is still append-only outside an erasure.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("UPDATE journal SET email = 'x' WHERE kind = 'contact.erased'")
    assert client.post(f"/contacts/{cid}/erase", data={"confirm": email}).status_code == 404


def test_a_bulk_action_on_a_large_filter_runs_in_a_worker(client, db, tag, workers, monkeypatch):
    """Past BULK_INLINE_MAX contacts (10,000; 3 here) a filter's bulk action leaves the request
    to a real worker, and changes every contact of the filter at once."""
    from app.services import contact
    from tests.conftest import wait_for

    monkeypatch.setattr(contact, "BULK_INLINE_MAX", 3)
    make(db, tag, 9)
    list_id = db.execute("INSERT INTO lists (name) VALUES (%s) RETURNING id", (tag,)).fetchone()["id"]
    r = client.post(f"/contacts/bulk?tag={tag}", data={"action": "add_list", "scope": "filter", "list_id": list_id},
                    follow_redirects=True)
    assert any("a worker does it in the background" in a for a in alerts(r)), alerts(r)
    wait_for(lambda: db.execute("SELECT count(*) AS n FROM list_members WHERE list_id = %s",
                                (list_id,)).fetchone()["n"] == 9, 60, message="the background bulk action")
    r = client.post(f"/contacts/bulk?tag={tag}", data={"action": "add_list", "scope": "selected", "list_id": list_id,
                                                        "ids": [str(i) for i in range(1, 6)]}, follow_redirects=True)
    assert not any("background" in a for a in alerts(r))  # a selection is always done in the request
