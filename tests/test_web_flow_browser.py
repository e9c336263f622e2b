"""Issue 2, steps 2-6, in headless Chromium against the live app, real workers and a real SMTP
server: log in, add a contact, upload a CSV into a list, write a campaign with two PDFs,
preview it, send a test, press Send, watch the counters complete, read a delivered email."""
import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

from aiosmtpd.smtp import Envelope
from playwright.sync_api import expect

from tests.test_send_e2e import PDF_CV, PDF_LETTER

BODY = """<html><head><style>p.greet { color: #123456; }</style></head><body>
<p class="greet">Dear {{ contact.name }},</p>
<p>How is the weather in {{ contact.attributes.city }}?</p></body></html>"""
CSV = b"email,name,city\ncsv-one@example.com,Csv One,Lima\ncsv-two@example.com,Csv Two,Kyoto\n"


def flash(page, text):
    expect(page.locator("p.flash", has_text=text).first).to_be_visible()


def capture(messages):
    """Store what the test SMTP server received the way the capture server of `scripts/run`
    does: through consumers.capture's own handler, on the exact bytes that came over SMTP.
    (The workers send to the programmable `smtp` fixture server, which keeps mail in memory;
    running the real handler on that mail fills the Inbox honestly, with nothing made up.)"""
    from psycopg_pool import AsyncConnectionPool

    from app.config import Config
    from consumers.capture import CaptureHandler

    async def store():
        async with AsyncConnectionPool(Config.DATABASE_URL, min_size=1, max_size=1) as pool:
            handler = CaptureHandler(pool)
            for mail_from, rcpt_tos, raw in messages:
                envelope = Envelope()
                envelope.mail_from, envelope.rcpt_tos = mail_from, list(rcpt_tos)
                envelope.original_content = envelope.content = raw
                assert (await handler.handle_DATA(None, None, envelope)).startswith("250")

    # Its own thread: Playwright's sync API already runs an event loop in this one.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, store()).result()


def test_a_campaign_from_login_to_the_inbox(browser, live_server, manager, workers, smtp, tmp_path):
    context = browser.new_context(base_url=live_server)
    page = context.new_page()
    page.set_default_timeout(15_000)

    # Step 2: every page sends to the login; logging in lands where we were going.
    page.goto("/contacts")
    expect(page).to_have_url(re.compile(r"/login\?next=/contacts$"))
    page.fill("#username", manager[0])
    page.fill("#password", "not the password")
    page.click("#login-form button[type=submit]")
    flash(page, "Wrong username or password.")
    page.fill("#username", manager[0])
    page.fill("#password", manager[1])
    page.click("#login-form button[type=submit]")
    expect(page).to_have_url(f"{live_server}/contacts")

    # Step 3: a list, a contact by hand, a small CSV into the list.
    page.click("nav >> text=Lists")
    page.fill("#list-form #name", "Browser friends")
    page.click("#list-form button[type=submit]")
    flash(page, "List Browser friends created.")

    page.click("nav >> text=Contacts")
    page.fill("#contact-form #email", "hand@example.com")
    page.fill("#contact-form #name", "Hand Added")
    page.fill("#contact-form #attributes", '{"city": "Bergen"}')
    page.select_option("#contact-form #list_id", label="Browser friends")
    page.click("#contact-form button[type=submit]")
    flash(page, "Saved hand@example.com.")

    page.set_input_files("#upload-form input[type=file]",
                         files=[{"name": "friends.csv", "mimeType": "text/csv", "buffer": CSV}])
    page.select_option("#upload_list_id", label="Browser friends")
    page.click("#upload-form button[type=submit]")
    flash(page, "Imported: 2 new, 0 updated, 0 rejected.")
    page.click("nav >> text=Lists")
    expect(page.locator("tr", has_text="Browser friends")).to_contain_text("3")

    # Step 4: the campaign, with two PDFs.
    page.click("nav >> text=Campaigns")
    page.click("#new-campaign")
    page.fill("#name", "Browser campaign")
    page.fill("#from_name", "Jo Sender")
    page.fill("#from_email", "jo@example.org")
    page.fill("#reply_to", "replies@example.org")
    page.fill("#subject", "Hello {{ contact.name }}")
    page.fill("#body_html", BODY)
    page.select_option("#list_id", label="Browser friends (3)")
    page.click("#campaign-form button[type=submit]")
    flash(page, "Campaign saved as a draft.")
    expect(page.locator("#campaign-status")).to_have_text("draft")
    for name, data in (("cv.pdf", PDF_CV), ("cover-letter.pdf", PDF_LETTER)):
        page.set_input_files("#attach-form input[type=file]",
                             files=[{"name": name, "mimeType": "application/pdf", "buffer": data}])
        page.click("#attach-form button[type=submit]")
        flash(page, f"Attached {name}.")
    expect(page.locator("section", has_text="Attachments").locator("li")).to_have_count(2)

    # Step 5: preview for a contact (a new tab), a test send, then Send.
    page.fill("#preview-form #contact_email", "hand@example.com")
    with page.expect_popup() as popup:
        page.click("#preview-form button[type=submit]")
    preview = popup.value
    expect(preview.locator("#preview-subject")).to_have_text("Hello Hand Added")
    expect(preview.frame_locator("#preview-html").locator("p.greet")).to_have_text("Dear Hand Added,")
    expect(preview.frame_locator("#preview-html").locator("body")).to_contain_text("weather in Bergen")
    expect(preview.locator("#preview-text")).to_contain_text("weather in Bergen")
    preview.close()

    page.fill("#test-form #to", "me@example.com")
    page.fill("#test-form #test_contact_email", "csv-two@example.com")
    page.click("#test-form button[type=submit]")
    flash(page, "Test sent to me@example.com: the server said 250")
    test_mail = smtp.parsed()
    assert [m["Subject"] for m in test_mail] == ["[TEST] Hello Csv Two"]
    assert smtp.recipients() == ["me@example.com"]

    page.click("#send-button")
    flash(page, "Sending to 3 recipients.")

    # Step 6: the page counts up by itself until the campaign is completed.
    expect(page.locator("#campaign-status")).to_have_text("completed", timeout=60_000)
    expect(page.locator("#count-total")).to_have_text("3")
    expect(page.locator("#count-sent")).to_have_text("3")
    expect(page.locator("#count-queued")).to_have_text("0")
    expect(page.locator("#count-failed")).to_have_text("0")
    expect(page.locator("#deliveries tbody tr", has_text="sent")).to_have_count(3)
    assert page.locator("#progress-bar").evaluate("bar => bar.value === bar.max")
    expect(page.locator("#send-button")).to_have_count(0)
    assert sorted(smtp.recipients()) == ["csv-one@example.com", "csv-two@example.com",
                                         "hand@example.com", "me@example.com"]

    capture(smtp.messages)
    page.click("nav >> text=Inbox")
    expect(page.locator("#inbox tbody tr")).to_have_count(4)
    page.fill("input[name=to]", "hand@example.com")
    page.click("form.search button[type=submit]")
    expect(page.locator("#inbox tbody tr")).to_have_count(1)
    page.click("#inbox >> text=Hello Hand Added")
    expect(page.locator("#message-subject")).to_have_text("Hello Hand Added")
    expect(page.locator("#message-attachments li")).to_have_text([
        f"cv.pdf (application/pdf, {len(PDF_CV)} bytes)",
        f"cover-letter.pdf (application/pdf, {len(PDF_LETTER)} bytes)"])
    # The inbox shows the HTML part after nh3 (no scripts, no classes or styles), in a sandbox.
    expect(page.frame_locator("#message-html").locator("p").first).to_have_text("Dear Hand Added,")
    expect(page.locator("#message-text")).to_contain_text("How is the weather in Bergen?")
    expect(page.locator("dl")).to_contain_text("List-Unsubscribe-Post")
    context.close()
