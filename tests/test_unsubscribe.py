"""Unsubscribe works from the first email: the List-Unsubscribe header and the footer link carry
a signed token, the page confirms, RFC 8058 one-click unsubscribes at once, a bad or expired
token gets a clear 400 page, and the contact is left out of every later campaign."""
import base64
import json
import re
import time
from urllib.parse import urlsplit

import pytest
from itsdangerous import URLSafeTimedSerializer

from tests.conftest import wait_for
from tests.test_send_e2e import campaign_status, make_campaign, make_list, upload_csv
from tests.test_web_auth import CSRF

BODY = "<p>Dear {{ contact.name }}, news from {{ contact.attributes.city }}.</p>"  # no link: the footer adds one
HREF = re.compile(r'href="([^"]*/u/[^"]+)"')


@pytest.fixture
def public(vhost):
    """What a recipient's browser or mail client reaches: the app with CSRF on, not logged in."""
    from app import create_app

    return create_app({"TESTING": True}).test_client()


def send_and_wait(client, db, list_id, smtp, **campaign):
    cid = make_campaign(client, db, list_id, body_html=BODY, **campaign)
    r = client.post(f"/campaigns/{cid}/send", follow_redirects=True)
    assert b"Sending to" in r.data, r.data
    wait_for(lambda: campaign_status(db, cid) == "completed", message=f"campaign {cid} completed")
    return cid


def links_of(message) -> tuple[str, str]:
    """(List-Unsubscribe header URL, footer link URL) of a received email, as paths."""
    header = message["List-Unsubscribe"].strip()
    assert header.startswith("<") and header.endswith(">")
    footer = HREF.findall(message.get_body(("html",)).get_content())
    assert len(footer) == 1
    return urlsplit(header[1:-1]).path, urlsplit(footer[0]).path


def status_of(db, email) -> str:
    return db.execute("SELECT status FROM contacts WHERE email = %s", (email,)).fetchone()["status"]


def unsubscribe_events(db, email):
    return db.execute("SELECT campaign_id, source, detail FROM journal WHERE kind = 'contact.unsubscribed' "
                      "AND email = %s", (email,)).fetchall()


def test_unsubscribe_from_a_received_email_and_stay_out_of_later_campaigns(client, public, db, smtp, workers):
    list_id = make_list(client, db, "Newsletter")
    upload_csv(client, list_id, [("alice@example.net", "Alice", "Oslo"), ("bob@example.net", "Bob", "Rome")])
    first = send_and_wait(client, db, list_id, smtp)
    mails = {m["To"].addresses[0].addr_spec: m for m in smtp.parsed()}
    assert set(mails) == {"alice@example.net", "bob@example.net"}
    assert all(m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for m in mails.values())

    # Alice follows the footer link: the page asks first (a link scanner's GET changes nothing).
    header_path, footer_path = links_of(mails["alice@example.net"])
    assert header_path == footer_path and re.fullmatch(r"/u/[\w.-]+", footer_path)
    assert "alice" not in footer_path
    page = public.get(footer_path)
    assert page.status_code == 200 and b'id="confirm-unsubscribe"' in page.data
    assert status_of(db, "alice@example.net") == "subscribed"
    r = public.post(footer_path, data={})  # the confirm form without its token
    assert r.status_code == 400 and b"the form expired" in r.data
    assert status_of(db, "alice@example.net") == "subscribed"
    token = CSRF.search(page.get_data(as_text=True)).group(1)
    r = public.post(footer_path, data={"csrf_token": token})
    assert r.status_code == 200 and b"You are unsubscribed" in r.data
    assert status_of(db, "alice@example.net") == "unsubscribed"

    # Bob's mail client uses the header: RFC 8058 one-click, no page, no cookie, no token.
    bob_header, _ = links_of(mails["bob@example.net"])
    r = public.post(bob_header, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and b"You are unsubscribed" in r.data
    assert status_of(db, "bob@example.net") == "unsubscribed"
    r = public.post(bob_header, data={"List-Unsubscribe": "One-Click"})  # clients may retry
    assert r.status_code == 200

    assert [(e["campaign_id"], e["source"], e["detail"]["how"]) for e in unsubscribe_events(db, "alice@example.net")] \
        == [(first, "recipient", "page")]
    assert [(e["campaign_id"], e["detail"]["how"]) for e in unsubscribe_events(db, "bob@example.net")] \
        == [(first, "one-click")]

    # A later campaign to the same list reaches only who is still subscribed.
    upload_csv(client, list_id, [("carol@example.net", "Carol", "Lima")])
    smtp.reset()
    second = send_and_wait(client, db, list_id, smtp, name="Second")
    assert smtp.recipients() == ["carol@example.net"]
    emails = [r["email"] for r in db.execute("SELECT email FROM deliveries WHERE campaign_id = %s", (second,))]
    assert emails == ["carol@example.net"]


def _token_for(db, email, campaign_id=None):
    from app.tokens import unsubscribe_url

    contact = db.execute("SELECT id FROM contacts WHERE email = %s", (email,)).fetchone()
    if contact is None:
        contact = db.execute("INSERT INTO contacts (email, name) VALUES (%s, 'Token') RETURNING id",
                             (email,)).fetchone()
    return contact["id"], urlsplit(unsubscribe_url(contact["id"], campaign_id)).path.rsplit("/", 1)[1]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _bad_tokens(db):
    """Every way a link can be wrong, each with what the page must say."""
    from app.tokens import UNSUBSCRIBE, sign

    contact_id, token = _token_for(db, "target@example.net")
    other_id, _ = _token_for(db, "bystander@example.net")
    payload, stamp, signature = token.split(".")
    middle = len(signature) // 2
    flipped = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1:]
    return {
        "tampered signature": f"{payload}.{stamp}.{flipped}",
        "another contact's id": f"{_b64(json.dumps([other_id, None]).encode())}.{stamp}.{signature}",
        "truncated": token[:-6],
        "no signature": f"{payload}.{stamp}",
        "garbage": "not-a-token-at-all",
        "dots": "...",
        "huge": "a" * 5000,
        "non-ASCII": "ünïcødé.x.y",
        "another key": URLSafeTimedSerializer("not the secret key", salt="mailer.unsubscribe")
        .dumps([contact_id, None]),
        "another purpose": sign("not-unsubscribe", [contact_id, None]),
        "a payload of the wrong shape": sign(UNSUBSCRIBE, "hello"),
        "a payload too short": sign(UNSUBSCRIBE, [contact_id]),
    }


def test_every_bad_token_gets_the_clear_400_page_and_changes_nothing(public, db):
    for label, token in _bad_tokens(db).items():
        for method, data in (("GET", None), ("POST", {"List-Unsubscribe": "One-Click"}), ("POST", {})):
            r = public.open(f"/u/{token}", method=method, data=data)
            assert r.status_code == 400, (label, method, r.status_code)
            text = r.get_data(as_text=True)
            assert "Link not valid" in text and "Sorry, this link is not valid." in text, label
    assert status_of(db, "target@example.net") == "subscribed"
    assert status_of(db, "bystander@example.net") == "subscribed"
    assert unsubscribe_events(db, "target@example.net") == []


def test_an_expired_token_gets_the_clear_400_page(public, db, monkeypatch):
    from itsdangerous.timed import TimestampSigner

    from app.config import Config

    # A link signed 181 days ago, against the default 180-day lifetime.
    signed_at = int(time.time()) - 181 * 24 * 3600
    with monkeypatch.context() as m:
        m.setattr(TimestampSigner, "get_timestamp", lambda self: signed_at)
        _, old = _token_for(db, "old-link@example.net", 7)
    assert Config.UNSUBSCRIBE_TOKEN_MAX_AGE == 180 * 24 * 3600
    for method, data in (("GET", None), ("POST", {"List-Unsubscribe": "One-Click"})):
        r = public.open(f"/u/{old}", method=method, data=data)
        assert r.status_code == 400
        assert "Sorry, this link has expired." in r.get_data(as_text=True)
    assert status_of(db, "old-link@example.net") == "subscribed"

    # The same token is still good under a longer lifetime: the age, not the token, was refused.
    monkeypatch.setattr(Config, "UNSUBSCRIBE_TOKEN_MAX_AGE", 365 * 24 * 3600)
    assert public.get(f"/u/{old}").status_code == 200
