"""The journal page and its CSV export: filters by campaign, event kind (exact or a family)
and address, pages of 100, a streamed export that spreadsheets cannot turn into formulas, and
clear refusals of bad filters; the journal itself refuses to be rewritten."""
import csv
import io

import psycopg
import pytest

from app.db import pool
from app.services import journal
from app.services.journal import Event


@pytest.fixture
def events(db):
    cid = db.execute("INSERT INTO campaigns (name, from_email, subject) VALUES ('journal', 'a@example.com', 's') "
                     "RETURNING id").fetchone()["id"]
    batch = [Event("delivery.sent", cid, i, f"Person{i}@Example.com", source="dispatch", detail={"n": i})
             for i in range(150)]
    batch += [Event("delivery.failed", cid, 999, "=HYPERLINK(\"http://evil\")@example.com",
                    detail={"reply": "550 no"}),
              Event("test.a_b", cid), Event("test.axb", cid), Event("campaign.paused", cid, source="console")]
    with pool().connection() as conn:
        journal.append(conn, batch)
    return cid


def kinds_of(html: str) -> list[str]:
    return [line.split(">", 1)[1].split("<", 1)[0] for line in html.split('<td class="kind"')[1:]]


def test_filters_pages_and_families(client, events):
    page = client.get(f"/journal?campaign={events}").get_data(as_text=True)
    assert len(kinds_of(page)) == 100 and 'id="older"' in page
    before = page.split('id="older" href="')[1].split('"')[0].replace("&amp;", "&")
    rest = client.get(before).get_data(as_text=True)
    assert len(kinds_of(rest)) == 54 and 'id="older"' not in rest

    family = kinds_of(client.get(f"/journal?campaign={events}&kind=delivery.*").get_data(as_text=True))
    assert set(family) == {"delivery.sent", "delivery.failed"}
    assert kinds_of(client.get(f"/journal?campaign={events}&kind=test.a_b").get_data(as_text=True)) == ["test.a_b"]
    assert kinds_of(client.get(f"/journal?campaign={events}&kind=test.%25").get_data(as_text=True)) == []
    by_address = client.get(f"/journal?email=PERSON7@example.COM&campaign={events}").get_data(as_text=True)
    assert kinds_of(by_address) == ["delivery.sent"] and "Person7@Example.com" in by_address
    console = client.get(f"/journal?campaign={events}&kind=campaign.paused").get_data(as_text=True)
    assert '<td class="source">console</td>' in console


@pytest.mark.parametrize("query, message", [
    ("campaign=abc", "The filter is not valid"),
    ("campaign=-4", "must be a positive whole number"),
    (f"campaign={2**64}", "must be a positive whole number"),
    ("kind=" + "x" * 101, "The filter is not valid"),
    ("email=" + "a" * 400 + "@example.com", "The filter is not valid"),
    ("before=0", "must be a positive whole number"),
    ("email=a%00b@example.com", "NUL character"),
])
def test_bad_filters_get_a_clear_400(client, events, query, message):
    for path in ("/journal", "/journal.csv"):
        r = client.get(f"{path}?{query}")
        assert r.status_code == 400 and message in r.get_data(as_text=True), (path, query)


def test_csv_export_streams_every_matching_event_safely(client, events):
    r = client.get(f"/journal.csv?campaign={events}&kind=delivery.*")
    assert r.status_code == 200 and r.is_streamed and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert len(rows) == 151 and {r["kind"] for r in rows} == {"delivery.sent", "delivery.failed"}
    evil = next(r for r in rows if r["kind"] == "delivery.failed")
    assert evil["email"].startswith("'=HYPERLINK")  # not a formula in a spreadsheet
    assert evil["detail"] == '{"reply": "550 no"}'
    empty = client.get("/journal.csv?email=nobody@example.com").get_data(as_text=True)
    assert empty.strip() == "id,at,campaign_id,delivery_id,email,kind,source,detail"


def test_the_journal_cannot_be_rewritten(db, events):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("UPDATE journal SET kind = 'forged' WHERE campaign_id = %s", (events,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("DELETE FROM journal WHERE campaign_id = %s", (events,))
