"""Every bad input of issue 2 gets a clear message, never a 500, and never a half-sent campaign."""
import io
import re
import socket
import threading
from html import unescape

import pytest

from tests.conftest import wait_for
from tests.test_send_e2e import attach, campaign_status, make_campaign, make_list, upload_csv

ALERT = re.compile(r'role="alert">(.*?)</', re.S)


def alerts(response) -> list[str]:
    """The flashed messages and field errors a page shows, as the user reads them."""
    return [unescape(m).strip() for m in ALERT.findall(response.get_data(as_text=True))]


def count(db, sql, *args) -> int:
    return db.execute(f"SELECT count(*) AS n FROM {sql}", args).fetchone()["n"]


def unsent(db, campaign_id):
    """A campaign nobody managed to start: still a draft, no deliveries, no journal of a start."""
    assert campaign_status(db, campaign_id) == "draft"
    assert count(db, "deliveries WHERE campaign_id = %s", campaign_id) == 0
    assert count(db, "journal WHERE campaign_id = %s AND kind LIKE 'campaign.%%'", campaign_id) == 0


def upload(client, data: bytes, list_id=0, name="contacts.csv"):
    return client.post("/contacts/upload", content_type="multipart/form-data", follow_redirects=True,
                       data={"file": (io.BytesIO(data), name), "list_id": list_id})


def campaign(client, db, list_id, **overrides):
    """A draft whose body needs only the contact's name, so any contact can be rendered."""
    return make_campaign(client, db, list_id, **{"body_html": "<p>Dear {{ contact.name }}</p>", **overrides})


@pytest.fixture
def a_list(client, db):
    return make_list(client, db, f"list-{count(db, 'lists')}")


# ---- the campaign form ---------------------------------------------------------------------

@pytest.mark.parametrize("field,value,message", [
    ("subject", "Hi {{ contact.name", "Subject: syntax error on line 1"),
    ("body_html", "<p>ok</p>\n<p>{% if %}</p>", "Body: syntax error on line 2"),
    ("body_html", "<p>{{ contact.name }</p>", "Body: syntax error on line 1"),
    ("body_html", "<p>{% for x in contact.tags %}</p>", "Body: syntax error"),
    ("body_html", "<p>{{ secret_key }}</p>", "Body: unknown variable(s) secret_key"),
    ("subject", "{{ config }} and {{ request }}", "Subject: unknown variable(s) config, request"),
    ("from_email", "not-an-address", "not a valid email address"),
    ("from_email", "jo@", "not a valid email address"),
    ("from_email", "@example.org", "not a valid email address"),
    ("from_email", "jo smith@example.org", "not a valid email address"),
    ("from_email", "jo@example.org\r\nBcc: victim@example.com", "not a valid email address"),
    ("from_email", "x" * 400 + "@example.org", "Field cannot be longer than 320 characters."),
    ("from_email", "", "This field is required."),
    ("reply_to", "replies at example.org", "not a valid email address"),
    ("subject", "", "The subject cannot be empty."),
    ("subject", "   ", "The subject cannot be empty."),
    ("subject", "s" * 1000, "Field cannot be longer than 998 characters."),
    ("name", "", "This field is required."),
    ("name", "n" * 10_000, "Field cannot be longer than 200 characters."),
    ("body_html", "", "This field is required."),
    ("max_attempts", "0", "Number must be between 1 and 20."),
    ("max_attempts", "10" * 20, "Number must be between 1 and 20."),
    ("max_attempts", "many", "Not a valid integer value."),
    ("list_id", "999999", "Not a valid choice."),
    ("list_id", "abc", "Invalid Choice: could not coerce."),
])
def test_a_bad_campaign_form_is_refused_with_its_message(client, db, a_list, field, value, message):
    before = count(db, "campaigns")
    form = {"name": "Bad", "from_name": "Jo", "from_email": "jo@example.org", "reply_to": "",
            "subject": "Hi", "body_html": "<p>Hello</p>", "list_id": a_list, "max_attempts": 3, field: value}
    r = client.post("/campaigns/new", data=form)
    assert r.status_code == 400
    assert any(message in a for a in alerts(r)), alerts(r)
    assert count(db, "campaigns") == before


def test_editing_a_draft_into_a_broken_template_keeps_the_saved_one(client, db, a_list):
    cid = campaign(client, db, a_list)
    form = {"name": "Hello", "from_email": "jo@example.org", "subject": "Hi",
            "body_html": "<p>Dear {{ contact.name </p>", "list_id": a_list, "max_attempts": 3}
    r = client.post(f"/campaigns/{cid}/edit", data=form)
    assert r.status_code == 400 and any("Body: syntax error" in a for a in alerts(r))
    body = db.execute("SELECT body_html FROM campaigns WHERE id = %s", (cid,)).fetchone()["body_html"]
    assert body == "<p>Dear {{ contact.name }}</p>"


def test_a_huge_template_is_refused_when_rendered_not_by_a_crash(client, db, a_list):
    """`'x' * 10**7` passes the syntax check but the sandbox stops it at render time:
    preview and test send say why, and nothing is sent."""
    client.post("/contacts", data={"email": "huge-template@example.com", "list_id": a_list})
    cid = campaign(client, db, a_list, body_html="<p>{{ 'x' * 10000000 }}</p>")
    r = client.post(f"/campaigns/{cid}/preview", data={"contact_email": "huge-template@example.com"})
    assert r.status_code == 400
    assert "not allowed in a template: repetition too large" in alerts(r)
    r = client.post(f"/campaigns/{cid}/test", data={"to": "me@example.com"}, follow_redirects=True)
    assert "Test not sent: not allowed in a template: repetition too large" in alerts(r)


def test_a_subject_that_renders_empty_is_caught_by_the_preview(client, db, a_list, smtp):
    client.post("/contacts", data={"email": "empty-subject@example.com", "list_id": a_list})
    cid = campaign(client, db, a_list, subject="{{ contact.attributes.get('nothing', '') }}")
    r = client.post(f"/campaigns/{cid}/preview", data={"contact_email": "empty-subject@example.com"})
    assert r.status_code == 400 and "the subject renders empty" in alerts(r)
    r = client.post(f"/campaigns/{cid}/test", data={"to": "me@example.com"}, follow_redirects=True)
    assert "Test not sent: the subject renders empty" in alerts(r)
    assert smtp.count() == 0


def test_a_variable_missing_for_one_contact_fails_that_email_only(client, db, a_list, smtp, workers):
    """Known names are checked on save; whether a contact has an attribute is only known per
    email, so that one email fails with the reason and the others go out."""
    upload_csv(client, a_list, [("has-city@example.com", "Has City", "Oslo")])
    r = client.post("/contacts", data={"email": "no-city@example.com", "name": "No City", "list_id": a_list})
    assert r.status_code == 302
    cid = campaign(client, db, a_list, body_html="<p>Weather in {{ contact.attributes.city }}</p>")
    r = client.post(f"/campaigns/{cid}/preview", data={"contact_email": "no-city@example.com"})
    assert r.status_code == 400 and any("has no attribute 'city'" in a for a in alerts(r))

    client.post(f"/campaigns/{cid}/send")
    wait_for(lambda: campaign_status(db, cid) == "completed", message="campaign completed")
    rows = {r["email"]: r for r in db.execute(
        "SELECT email, status, last_error FROM deliveries WHERE campaign_id = %s", (cid,))}
    assert rows["has-city@example.com"]["status"] == "sent"
    assert rows["no-city@example.com"]["status"] == "failed"
    assert "has no attribute 'city'" in rows["no-city@example.com"]["last_error"]
    assert smtp.recipients() == ["has-city@example.com"]
    failed = db.execute("SELECT detail FROM journal WHERE campaign_id = %s AND kind = 'delivery.failed'",
                        (cid,)).fetchall()
    assert len(failed) == 1 and "has no attribute 'city'" in failed[0]["detail"]["error"]


# ---- sending -------------------------------------------------------------------------------

def test_a_campaign_to_an_empty_list_is_not_sent(client, db, a_list, smtp):
    cid = campaign(client, db, a_list)
    r = client.post(f"/campaigns/{cid}/send", follow_redirects=True)
    assert any(a.startswith("Not sent: the campaign has no recipients") for a in alerts(r)), alerts(r)
    unsent(db, cid)


def test_a_campaign_whose_contacts_all_opted_out_is_not_sent(client, db, a_list, smtp):
    upload_csv(client, a_list, [("gone1@example.com", "Gone", "A"), ("gone2@example.com", "Gone", "B"),
                                ("gone3@example.com", "Gone", "C")])
    db.execute("UPDATE contacts SET status = 'unsubscribed' WHERE email = 'gone1@example.com'")
    db.execute("UPDATE contacts SET status = 'bounced' WHERE email = 'gone2@example.com'")
    db.execute("INSERT INTO suppressions (email, reason) VALUES ('GONE3@example.com', 'test')")
    cid = campaign(client, db, a_list)
    r = client.post(f"/campaigns/{cid}/send", follow_redirects=True)
    assert any("no recipients" in a and all(w in a for w in ("unsubscribed", "bounced", "suppressed"))
               for a in alerts(r)), alerts(r)
    unsent(db, cid)


def test_a_broken_template_saved_behind_the_forms_back_never_starts(client, db, a_list, smtp):
    """A DBA may edit a draft in psql: Send compiles the template again before anything starts."""
    upload_csv(client, a_list, [("dba@example.com", "Dba", "X")])
    cid = campaign(client, db, a_list)
    db.execute("UPDATE campaigns SET body_html = '{{ contact.name' WHERE id = %s", (cid,))
    r = client.post(f"/campaigns/{cid}/send", follow_redirects=True)
    assert any(a.startswith("Not sent: Body: syntax error") for a in alerts(r)), alerts(r)
    unsent(db, cid)


def test_a_closed_smtp_port_fails_the_test_send_with_the_reason(client, db, a_list, monkeypatch):
    from app.config import Config

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(Config, "SMTP_URL", f"smtp://127.0.0.1:{port}?timeout=5")
    cid = campaign(client, db, a_list)
    r = client.post(f"/campaigns/{cid}/test", data={"to": "me@example.com"}, follow_redirects=True)
    assert r.status_code == 200
    msg = [a for a in alerts(r) if a.startswith("Test not sent")]
    assert msg and f"cannot connect to 127.0.0.1:{port}" in msg[0] and "refused" in msg[0].lower(), alerts(r)
    unsent(db, cid)


def test_an_smtp_server_refusing_the_session_fails_the_test_send_with_its_reply(client, db, a_list, monkeypatch):
    """A server that answers the connection with 554 (RFC 5321 4.3.1): its reply is shown."""
    from app.config import Config

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def refuse():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"554 5.3.2 No SMTP service here\r\n")
            conn.recv(1024)

    thread = threading.Thread(target=refuse, daemon=True)
    thread.start()
    monkeypatch.setattr(Config, "SMTP_URL", f"smtp://127.0.0.1:{port}?timeout=5")
    cid = campaign(client, db, a_list)
    try:
        r = client.post(f"/campaigns/{cid}/test", data={"to": "me@example.com"}, follow_redirects=True)
    finally:
        thread.join(5)
        listener.close()
    assert f"Test not sent: 127.0.0.1:{port} refused the session: 554 5.3.2 No SMTP service here" in alerts(r)
    unsent(db, cid)


@pytest.mark.parametrize("reply", ["554 5.7.1 Relay access denied", "452 4.3.1 Insufficient system storage"])
def test_an_smtp_server_refusing_the_message_shows_its_reply(client, db, a_list, smtp, reply):
    smtp.behaviour = lambda rcpt, attempt: reply
    cid = campaign(client, db, a_list)
    r = client.post(f"/campaigns/{cid}/test", data={"to": "me@example.com"}, follow_redirects=True)
    assert f"Test not sent: DATA: {reply}" in alerts(r)
    assert smtp.count() == 0
    unsent(db, cid)


@pytest.mark.parametrize("data,message", [
    ({"to": ""}, "Test not sent: This field is required."),
    ({"to": "not an address"}, "Test not sent: not a valid email address"),
    ({"to": "me@example.com", "contact_email": "nobody@example.com"},
     "Test not sent: no contact with the address nobody@example.com"),
])
def test_a_bad_test_send_form_says_why(client, db, a_list, smtp, data, message):
    cid = campaign(client, db, a_list)
    r = client.post(f"/campaigns/{cid}/test", data=data, follow_redirects=True)
    assert any(a.startswith(message) for a in alerts(r)), alerts(r)
    assert smtp.count() == 0


def test_a_preview_for_an_unknown_contact_says_so(client, db, a_list):
    cid = campaign(client, db, a_list)
    r = client.post(f"/campaigns/{cid}/preview", data={"contact_email": "ghost@example.com"})
    assert r.status_code == 400 and "no contact with the address ghost@example.com" in alerts(r)


# ---- attachments ---------------------------------------------------------------------------

def test_attachments_over_the_limit_are_refused_and_the_rest_kept(client, db, a_list, monkeypatch):
    from app.config import Config

    monkeypatch.setattr(Config, "MAX_ATTACHMENT_BYTES", 64 * 1024)
    cid = campaign(client, db, a_list)
    page = client.get(f"/campaigns/{cid}").get_data(as_text=True)
    assert "Up to 64 KB in all." in page

    r = client.post(f"/campaigns/{cid}/attachments", content_type="multipart/form-data", follow_redirects=True,
                    data={"file": (io.BytesIO(b"x" * (64 * 1024 + 1)), "huge.pdf", "application/pdf")})
    assert "huge.pdf is not attached: attachments are limited to 64 KB per campaign in all." in alerts(r)
    attach(client, cid, "cv.pdf", b"%PDF" + b"a" * 40_000)
    r = client.post(f"/campaigns/{cid}/attachments", content_type="multipart/form-data", follow_redirects=True,
                    data={"file": (io.BytesIO(b"b" * 30_000), "letter.pdf", "application/pdf")})
    assert "letter.pdf is not attached: attachments are limited to 64 KB per campaign in all." in alerts(r)
    names = [r["filename"] for r in db.execute("SELECT filename FROM attachments WHERE campaign_id = %s", (cid,))]
    assert names == ["cv.pdf"]


def test_an_empty_or_missing_attachment_is_refused(client, db, a_list):
    cid = campaign(client, db, a_list)
    r = client.post(f"/campaigns/{cid}/attachments", content_type="multipart/form-data", follow_redirects=True,
                    data={"file": (io.BytesIO(b""), "empty.pdf")})
    assert "The file is empty." in alerts(r)
    r = client.post(f"/campaigns/{cid}/attachments", data={}, follow_redirects=True)
    assert "Choose a file to attach." in alerts(r)
    assert count(db, "attachments WHERE campaign_id = %s", cid) == 0


def test_an_attachment_name_cannot_carry_a_path_or_a_header(client, db, a_list):
    cid = campaign(client, db, a_list)
    attach(client, cid, "../../secret/cv.pdf", b"%PDF-1")
    attach(client, cid, 'a"\r\nBcc: victim@example.com.pdf', b"%PDF-2")
    names = [r["filename"] for r in db.execute(
        "SELECT filename FROM attachments WHERE campaign_id = %s ORDER BY id", (cid,))]
    assert names[0] == "cv.pdf"
    from app.mime import Attachment, Skeleton

    row = db.execute("SELECT * FROM campaigns WHERE id = %s", (cid,)).fetchone()
    skeleton = Skeleton.build(row, [Attachment(n, "application/pdf", b"x") for n in names])
    assert b"\r\nBcc:" not in skeleton.attachment_parts


def test_an_upload_over_the_request_limit_gets_the_too_large_page(client, db, a_list):
    client.application.config["MAX_CONTENT_LENGTH"] = 100 * 1024
    cid = campaign(client, db, a_list)
    r = client.post(f"/campaigns/{cid}/attachments", content_type="multipart/form-data",
                    data={"file": (io.BytesIO(b"x" * 200 * 1024), "big.pdf")})
    assert r.status_code == 413
    assert "The upload is over the limit of 100 KB." in r.get_data(as_text=True)
    assert count(db, "attachments WHERE campaign_id = %s", cid) == 0


def test_attachments_of_a_started_campaign_cannot_change(client, db, a_list, smtp, workers):
    upload_csv(client, a_list, [("started@example.com", "Started", "X")])
    cid = campaign(client, db, a_list)
    client.post(f"/campaigns/{cid}/send")
    wait_for(lambda: campaign_status(db, cid) == "completed", message="campaign completed")
    r = client.post(f"/campaigns/{cid}/attachments", content_type="multipart/form-data", follow_redirects=True,
                    data={"file": (io.BytesIO(b"%PDF"), "late.pdf")})
    assert "Attachments can only change on a draft." in alerts(r)
    assert count(db, "attachments WHERE campaign_id = %s", cid) == 0


# ---- contacts and CSV ----------------------------------------------------------------------

def test_csv_bad_rows_are_reported_by_line_and_good_rows_kept(client, db, a_list):
    data = ("email,name,city\n"
            "good1@example.com,Good One,Oslo\n"
            "not-an-email,Bad,Rome\n"
            "short@example.com,Short\n"
            "\n"
            "good2@example.com,Good Two,Lima\n"
            "good3@example.com," + "n" * 600 + ",Long\n"
            "<script>alert(1)</script>@x,Evil,Paris\n")
    r = upload(client, data.encode(), a_list)
    shown = alerts(r)
    assert "Imported: 2 new, 0 updated, 4 rejected." in shown
    assert any(a.startswith("line 3: not a valid email address") for a in shown), shown
    assert "line 4: 2 columns where the header has 3" in shown
    assert "line 7: the name is longer than 500 characters" in shown
    assert any(a.startswith("line 8: not a valid email address") for a in shown), shown
    assert "<script>alert(1)" not in r.get_data(as_text=True)
    members = {r["email"]: r for r in db.execute(
        "SELECT c.email, c.name, c.attributes FROM list_members m JOIN contacts c ON c.id = m.contact_id "
        "WHERE m.list_id = %s", (a_list,))}
    assert set(members) == {"good1@example.com", "good2@example.com"}
    assert members["good2@example.com"]["attributes"] == {"city": "Lima"}


def test_csv_with_a_huge_field_rejects_that_row_and_keeps_the_others(client, db, a_list):
    data = ("email,name,notes\n"
            "before@example.com,Before,x\n"
            "huge@example.com,Huge," + "z" * 200_000 + "\n"
            "big@example.com," + "b" * 10_240 + ",y\n"
            "after@example.com,After,y\n")
    r = upload(client, data.encode(), a_list)
    shown = alerts(r)
    assert "Imported: 2 new, 0 updated, 2 rejected." in shown, shown
    assert any(a.startswith("line 3: ") for a in shown), shown
    assert "line 4: a field is longer than 10000 characters" in shown
    emails = {r["email"] for r in db.execute(
        "SELECT c.email FROM list_members m JOIN contacts c ON c.id = m.contact_id WHERE m.list_id = %s", (a_list,))}
    assert emails == {"before@example.com", "after@example.com"}


def test_csv_with_a_nul_far_into_the_file_rejects_that_row(client, db, a_list):
    rows = "".join(f"pad{i}@example.com,Pad {i}\n" for i in range(200))  # past the binary sniff
    data = "email,name\n" + rows + "nul@example.com,Nu\x00l\n"
    r = upload(client, data.encode(), a_list)
    assert "Imported: 200 new, 0 updated, 1 rejected." in alerts(r)
    assert "line 202: a field contains a NUL character" in alerts(r)


@pytest.mark.parametrize("data,message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4,
     "Upload refused: this does not look like a CSV file (it contains binary data)"),
    # (UTF-16 is no longer refused: issue 5 imports it, see tests/test_import.py.)
    (b"", "Upload refused: the file is empty"),
    (b"\n \r\n\t\n", "Upload refused: the file is empty"),
    (b"name,city\nJo,Oslo\n", "Upload refused: the first row must be a header with an 'email' column"),
    (b"jo@example.com,Jo\n", "Upload refused: the first row must be a header with an 'email' column"),
    (bytes(range(1, 256)) * 40, "Upload refused: the first row must be a header with an 'email' column"),
])
def test_a_file_that_is_not_a_contacts_csv_is_refused(client, db, data, message):
    before = count(db, "contacts")
    r = upload(client, data)
    assert r.status_code == 200
    assert message in alerts(r), alerts(r)
    assert count(db, "contacts") == before


def test_an_upload_without_a_file_says_so(client):
    r = client.post("/contacts/upload", data={}, follow_redirects=True)
    assert "Choose a CSV file to upload." in alerts(r)


@pytest.mark.parametrize("form,message", [
    ({"email": ""}, "This field is required."),
    ({"email": "nope"}, "not a valid email address"),
    ({"email": "a@example.com\nb@example.com"}, "not a valid email address"),
    ({"email": "x" * 10_000 + "@example.com"}, "Field cannot be longer than 320 characters."),
    ({"email": "long@example.com", "name": "n" * 10_240}, "Field cannot be longer than 500 characters."),
    ({"email": "json@example.com", "attributes": "{city: Oslo}"}, "attributes are not valid JSON"),
    ({"email": "json@example.com", "attributes": "[1, 2]"}, "attributes must be a JSON object"),
    ({"email": "json@example.com", "attributes": "[" * 50_000 + "]" * 50_000}, "attributes are not valid JSON"),
    ({"email": "json@example.com", "attributes": "{}" + " " * 100_001}, "Field cannot be longer than 100000"),
    ({"email": "nul@example.com", "name": "Nu\x00l"}, "NUL character"),
    ({"email": "nul@example.com", "attributes": '{"a": "\\u0000"}'}, "attributes cannot contain"),
    ({"email": "list@example.com", "list_id": "424242"}, "Not a valid choice."),
])
def test_a_bad_contact_is_refused_with_its_message(client, db, form, message):
    before = count(db, "contacts")
    r = client.post("/contacts", data=form)
    assert r.status_code == 400
    assert any(message in a for a in alerts(r)), alerts(r)
    assert count(db, "contacts") == before


def test_a_contact_posted_without_a_name_field_is_saved(client, db):
    r = client.post("/contacts", data={"email": "noname@example.com"})
    assert r.status_code == 302
    assert db.execute("SELECT name FROM contacts WHERE email = 'noname@example.com'").fetchone()["name"] == ""


def test_hostile_names_are_shown_escaped_on_every_page(client, db, a_list, smtp):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    r = client.post("/contacts", data={"email": "evil@example.com", "name": evil, "list_id": a_list,
                                       "attributes": '{"note": "</script><script>alert(2)</script>"}'})
    assert r.status_code == 302
    upload(client, f"email,name\nevil2@example.com,{evil}\n".encode(), a_list)
    client.post("/lists", data={"name": evil, "description": evil})
    cid = campaign(client, db, a_list, name=evil, from_name=evil, subject="Hi {{ contact.name }}")
    pages = ["/contacts", "/lists", "/", f"/campaigns/{cid}", f"/campaigns/{cid}/edit"]
    for path in pages:
        text = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in text and "<img src=x" not in text, path
        assert "&lt;script&gt;" in text, path
    r = client.post(f"/campaigns/{cid}/preview", data={"contact_email": "evil@example.com"})
    text = r.get_data(as_text=True)
    assert "<script>alert" not in text and "<img src=x" not in text
    r = client.post(f"/campaigns/{cid}/test", data={"to": "me@example.com", "contact_email": "evil@example.com"},
                    follow_redirects=True)
    assert any(a.startswith("Test sent to me@example.com") for a in alerts(r))
    html = smtp.parsed()[0].get_body(("html",)).get_content()
    assert "Dear &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html and "<script>alert" not in html


@pytest.mark.parametrize("path", [
    "/contacts?q=a%00b", "/contacts?list=99999999999999999999999", "/contacts?after=-99999999999999999999999",
    "/inbox?to=a%00b", "/inbox?before=99999999999999999999999", "/campaigns/99999999999999999999999",
    "/api/campaigns/99999999999999999999999/stats", "/contacts?q=" + "q" * 10_000, "/inbox/0", "/campaigns/0",
])
def test_hostile_query_strings_get_a_clear_answer(client, path):
    r = client.get(path)
    assert r.status_code in (200, 400, 404), (path, r.status_code)
    if r.status_code == 400:
        said = r.get_json()["error"] if path.startswith("/api/") else r.get_data(as_text=True)
        assert "Nothing was saved." in said, (path, said)


def test_the_stats_api_answers_json_for_a_missing_campaign(client):
    r = client.get("/api/campaigns/424242/stats")
    assert r.status_code == 404 and r.get_json() == {"error": "no such campaign"}


def test_a_list_name_is_required_and_unique(client, db):
    assert client.post("/lists", data={"name": "Once"}).status_code == 302
    r = client.post("/lists", data={"name": "Once"})
    assert r.status_code == 400 and "a list with this name exists already" in alerts(r)
    r = client.post("/lists", data={"name": "   "})
    assert r.status_code == 400 and "This field is required." in alerts(r)
    r = client.post("/lists", data={"name": "L" * 10_000})
    assert r.status_code == 400 and "Field cannot be longer than 200 characters." in alerts(r)
    assert count(db, "lists WHERE name = 'Once'") == 1

