"""The dead-letter page and the journal page in headless Chromium, against the live app, real
workers and a real SMTP server: see dead letters with their reasons, replay one, discard
one; send from the campaign page, filter the journal and export it as CSV."""
import csv
import io

from playwright.sync_api import expect

from tests.conftest import wait_for
from tests.delivery_kit import deliveries, seed_campaign, start, wait_status


def flash(page, text):
    expect(page.locator("p.flash", has_text=text).first).to_be_visible()


def test_dead_letters_page_replay_and_discard(page, db, smtp, workers, services):
    services("scheduler")
    smtp.behaviour = lambda rcpt, attempt: "450 4.2.1 mailbox busy" if rcpt.startswith("stuck") else None
    emails = ["stuck-a@example.com", "stuck-b@example.com", "fine@example.com"]
    cid = seed_campaign(db, 0, "browserdl", max_attempts=2, emails=emails)
    start(cid)
    wait_status(db, cid, "completed", timeout=60)

    page.goto(f"/campaigns/{cid}")
    page.click("#dead-letters-link")
    rows = page.locator("#dead-letters tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#dead-letter-counts")).to_contain_text("2 open")
    expect(rows.first.locator(".reason")).to_contain_text("no delivery after 2 attempts: DATA: 450 4.2.1 mailbox busy")

    smtp.behaviour = None
    page.locator("#dead-letters tr", has_text="stuck-a@example.com").locator("button.replay").click()
    flash(page, "Replay: 1 sent again.")
    page.locator("#dead-letters tr", has_text="stuck-b@example.com").locator("button.discard").click()
    flash(page, "Dead letter discarded")
    expect(page.locator("#dead-letters tbody tr")).to_have_count(1)  # the open view: nothing open left...
    expect(page.locator("#dead-letters tbody")).to_contain_text("No dead letters here.")
    page.select_option("#dead-letter-status", "all")
    page.click("#dead-letter-filter button[type=submit]")
    expect(page.locator("#dead-letters tr.dl-replayed")).to_contain_text("sent again")
    expect(page.locator("#dead-letters tr.dl-discarded")).to_contain_text("discarded from the ui")

    wait_for(lambda: deliveries(db, cid)["stuck-a@example.com"]["status"] == "sent", message="replayed email sent")
    wait_status(db, cid, "completed")
    assert sorted(smtp.recipients()) == ["fine@example.com", "stuck-a@example.com"]
    assert deliveries(db, cid)["stuck-b@example.com"]["status"] == "dead"


def test_journal_page_filters_and_exports(page, db, smtp, workers, services, tmp_path):
    smtp.behaviour = lambda rcpt, attempt: "550 5.1.1 no such user" if rcpt.startswith("gone") else None
    emails = [f"j{i}@example.com" for i in range(5)] + ["gone@example.com"]
    cid = seed_campaign(db, 0, "browserjournal", emails=emails)
    page.goto(f"/campaigns/{cid}")
    page.click("#send-button")
    wait_status(db, cid, "completed", timeout=60)
    other = seed_campaign(db, 3, "browserother")
    start(other)
    wait_status(db, other, "completed", timeout=60)

    page.goto("/journal")
    expect(page.locator("#journal tr.event").first).to_be_visible()
    page.fill("#filter-campaign", str(cid))
    page.select_option("#filter-kind", "delivery.*")
    page.click("#filter-button")
    kinds = page.locator("#journal td.kind").all_inner_texts()
    assert sorted(kinds) == ["delivery.failed"] + ["delivery.sent"] * 5
    page.select_option("#filter-kind", "delivery.failed")
    page.fill("#filter-email", "GONE@example.com")  # addresses match whatever their case
    page.click("#filter-button")
    expect(page.locator("#journal tr.event")).to_have_count(1)
    expect(page.locator("#journal td.email")).to_have_text("gone@example.com")
    expect(page.locator("#journal tr.event")).to_contain_text("no such user")

    page.select_option("#filter-kind", "")
    page.fill("#filter-email", "")
    page.click("#filter-button")
    with page.expect_download() as download:
        page.click("#export-csv")
    path = tmp_path / "journal.csv"
    download.value.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert {r["campaign_id"] for r in rows} == {str(cid)}
    assert {"campaign.running", "campaign.materialised", "campaign.completed", "delivery.sent", "delivery.failed",
            "suppression.added"} <= {r["kind"] for r in rows}
    assert sum(r["kind"] == "delivery.sent" for r in rows) == 5
    assert [r for r in rows if r["kind"] == "campaign.running"][0]["source"] == "ui"

    page.fill("#filter-campaign", "not a number")
    page.click("#filter-button")
    expect(page.locator("main")).to_contain_text("The filter is not valid")
