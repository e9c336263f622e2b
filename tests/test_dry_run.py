"""The dry run: every recipient's email rendered and built as a Send would, against the real
PostgreSQL, with nothing sent or written; what would fail is said with its reason and a few
addresses. Also in the browser, from the campaign page."""
import re

from playwright.sync_api import expect

from app.config import Config
from tests.delivery_kit import seed_campaign

BODY = "<p>Hello {{ contact.name }} in {{ contact.attributes.city }}</p>"


def dry_run_campaign(db, n: int, prefix: str) -> int:
    """n recipients; every third has no city (the body needs one), and one address that the
    import would have refused was put in by hand."""
    cid = seed_campaign(db, n, prefix)
    db.execute("UPDATE campaigns SET body_html = %s WHERE id = %s", (BODY, cid))
    db.execute("""UPDATE contacts c SET attributes = '{"city": "Oslo"}' FROM list_members m, campaigns k
                   WHERE k.id = %s AND m.list_id = k.list_id AND m.contact_id = c.id AND c.id %% 3 <> 0""", (cid,))
    bad = db.execute("""INSERT INTO contacts (email, name, attributes) VALUES (%s, 'Bad', '{"city": "Oslo"}')
                        RETURNING id""", (f"{prefix}..dots@example.com",)).fetchone()["id"]
    db.execute("INSERT INTO list_members (list_id, contact_id) SELECT list_id, %s FROM campaigns WHERE id = %s",
               (bad, cid))
    return cid


def nothing_written(db, cid: int) -> None:
    assert db.execute("SELECT status FROM campaigns WHERE id = %s", (cid,)).fetchone()["status"] == "draft"
    assert db.execute("SELECT count(*) AS n FROM deliveries WHERE campaign_id = %s", (cid,)).fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM journal WHERE campaign_id = %s", (cid,)).fetchone()["n"] == 0


def test_a_dry_run_says_who_would_fail_and_why_and_writes_nothing(client, db):
    cid = dry_run_campaign(db, 30, "dry")
    no_city = db.execute("""SELECT count(*) AS n FROM contacts c JOIN list_members m ON m.contact_id = c.id
                            JOIN campaigns k ON k.list_id = m.list_id WHERE k.id = %s AND c.id %% 3 = 0
                              AND c.email NOT LIKE '%%..%%'""", (cid,)).fetchone()["n"]
    r = client.post(f"/campaigns/{cid}/dry-run")
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert "31 recipients now;\n31 checked" in page
    assert f"<strong>{31 - no_city - 1} would be sent</strong>" in page
    assert f"<strong>{no_city + 1} would fail</strong>" in page
    rows = re.findall(r"<tr><td>(.*?)</td><td>(\d+)</td><td>(.*?)</td></tr>", page)
    reasons = {reason: (int(n), examples) for reason, n, examples in rows}
    unknown = [r for r in reasons if "unknown variable" in r and "city" in r]
    assert unknown and reasons[unknown[0]][0] == no_city and "@example.com" in reasons[unknown[0]][1]
    invalid = [r for r in reasons if r.startswith("the address is not valid")]
    assert invalid and reasons[invalid[0]] == (1, "dry..dots@example.com")
    nothing_written(db, cid)


def test_a_dry_run_of_a_large_target_says_how_much_it_checked(client, db, monkeypatch):
    monkeypatch.setattr(Config, "DRY_RUN_LIMIT", 10)
    cid = dry_run_campaign(db, 25, "drybig")
    page = client.post(f"/campaigns/{cid}/dry-run").get_data(as_text=True)
    assert "26 recipients now;\n10 checked" in page and "Only the first 10 recipients were checked" in page
    nothing_written(db, cid)


def test_a_dry_run_that_cannot_run_says_why(client, db):
    cid = db.execute("INSERT INTO campaigns (name, from_email, subject, body_html) VALUES "
                     "('no target', 'a@example.org', 's', '<p>x</p>') RETURNING id").fetchone()["id"]
    r = client.post(f"/campaigns/{cid}/dry-run")
    assert r.status_code == 400 and "choose a list or a segment" in r.get_data(as_text=True)
    broken = seed_campaign(db, 3, "drybroken")
    db.execute("UPDATE campaigns SET body_html = '<p>{{ contact.name </p>' WHERE id = %s", (broken,))
    r = client.post(f"/campaigns/{broken}/dry-run")
    assert r.status_code == 400 and "syntax error" in r.get_data(as_text=True)
    assert client.post("/campaigns/999999999/dry-run").status_code == 404
    nothing_written(db, broken)


def test_the_dry_run_button_in_the_browser(page, db):
    cid = dry_run_campaign(db, 12, "drybrowser")
    page.goto(f"/campaigns/{cid}")
    page.click("#dry-run-button")
    expect(page.locator("#dry-run-summary")).to_contain_text("13 recipients now")
    expect(page.locator("#dry-run-failures")).to_contain_text("drybrowser..dots@example.com")
    nothing_written(db, cid)
