"""Issue 5 in headless Chromium: upload a file, map its columns on the preview, start the import,
watch the progress bar fill while a real worker runs it, read the report, download the rejected
rows, and find the contacts with the page's filters."""
import re

from playwright.sync_api import expect

ROWS = 3000
CSV = ("E-mail;Full name;Kommune;Score\n"
       + "".join(f"browser{i}@example.com;Browser {i};Tromsø;{i}\n" for i in range(ROWS))
       + "not-an-address;Broken;Oslo;1\nbrowser7@example.com;Seven Again;Bergen;x\n").encode("utf-8")


def test_import_page_maps_columns_and_shows_progress_to_the_report(page, live_server, workers, db):
    page.click("nav >> text=Lists")
    page.fill("#list-form #name", "Browser import")
    page.click("#list-form button[type=submit]")

    page.click("nav >> text=Contacts")
    page.click("#import-link")
    page.set_input_files("#import-upload-form input[type=file]",
                         files=[{"name": "people.csv", "mimeType": "text/csv", "buffer": CSV}])
    page.click("#import-upload-form button[type=submit]")

    # The mapping page: the first rows, read with the right delimiter and encoding, and a guess.
    expect(page.locator("#preview")).to_contain_text("Tromsø")
    expect(page.locator("#preview tbody tr")).to_have_count(8)
    expect(page.locator("select[name='columns-0-role']")).to_have_value("email")
    expect(page.locator("select[name='columns-1-role']")).to_have_value("name")
    expect(page.locator("select[name='columns-3-kind']")).to_have_value("number")
    page.fill("input[name='columns-2-key']", "city")
    page.select_option("#lists", label="Browser import (0)")

    # No worker yet: the page must move on by itself once one starts.
    workers.stop()
    page.click("#start-import")
    expect(page.locator("#import-phase")).to_have_text("Waiting for a worker…")
    expect(page.locator("#import-bar")).to_be_visible()
    workers.start_more()

    expect(page.locator("#import-phase")).to_have_text("Done.", timeout=90_000)
    expect(page.locator("#import-status")).to_have_text("done")
    assert page.locator("#import-bar").evaluate("bar => bar.value") == 1
    expect(page.locator("#count-inserted")).to_have_text(str(ROWS))
    expect(page.locator("#count-rejected")).to_have_text("2")
    expect(page.locator("#count-duplicates")).to_have_text("0")
    expect(page.locator("#report-text")).to_have_text(f"{ROWS} new, 0 updated, 0 skipped, 2 rejected, "
                                                      "0 duplicates in the file.")
    with page.expect_download() as download:
        page.click("#rejects-link")
    text = open(download.value.path(), encoding="utf-8").read()
    assert f"{ROWS + 2},not a valid email address" in text
    assert f"{ROWS + 3},Score: 'x' is not a number,browser7@example.com,Seven Again,Bergen,x" in text

    # The contacts page finds them by list and by an attribute.
    page.click("nav >> text=Contacts")
    page.select_option("#filter-list", label="Browser import")
    page.fill("#filter-q", "city=Tromsø")
    page.click("#filter-form button[type=submit]")
    expect(page.locator("#matching")).to_have_text(f"{ROWS:,} contacts match.")
    expect(page.locator("#contacts tbody tr")).to_have_count(50)
    first = page.locator("#contacts tbody td a").all_inner_texts()
    page.click("#older-page")
    expect(page).to_have_url(re.compile(r"before=\d+"))
    expect(page.locator("#contacts tbody tr")).to_have_count(50)
    assert not set(first) & set(page.locator("#contacts tbody td a").all_inner_texts())
    row = db.execute("SELECT name, attributes FROM contacts WHERE email = 'browser7@example.com'").fetchone()
    assert row == {"name": "Browser 7", "attributes": {"city": "Tromsø", "Score": 7}}
