"""Issue 2 end to end: UI -> PostgreSQL -> RabbitMQ -> real workers -> a real SMTP server."""
import io

from tests.conftest import wait_for

PDF_CV = b"%PDF-1.4\n% CV of the sender\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
PDF_LETTER = b"%PDF-1.4\n% cover letter\n" + b"\x00\xff" * 3000 + b"\n%%EOF\n"
BODY = """<html><head><style>p.greet { color: #123456; }</style></head><body>
<p class="greet">Dear {{ contact.name }},</p>
<p>How is {{ contact.attributes.city }}? Your id is {{ contact.id }}.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>"""


def make_list(client, db, name="Friends"):
    client.post("/lists", data={"name": name, "description": ""})
    return db.execute("SELECT id FROM lists WHERE name = %s", (name,)).fetchone()["id"]


def upload_csv(client, list_id, rows):
    data = "email,name,city\n" + "".join(f"{e},{n},{c}\n" for e, n, c in rows)
    return client.post("/contacts/upload", data={"file": (io.BytesIO(data.encode()), "c.csv"), "list_id": list_id},
                       content_type="multipart/form-data", follow_redirects=True)


def make_campaign(client, db, list_id, **overrides):
    form = {"name": "Hello", "from_name": "Jo Sender", "from_email": "jo@example.org",
            "reply_to": "replies@example.org", "subject": "Hi {{ contact.name }}", "body_html": BODY,
            "list_id": list_id, "max_attempts": 3}
    form.update(overrides)
    r = client.post("/campaigns/new", data=form)
    assert r.status_code == 302, r.data.decode()[:2000]
    return int(r.headers["Location"].rstrip("/").rsplit("/", 1)[-1])


def attach(client, campaign_id, name, data, ctype="application/pdf"):
    r = client.post(f"/campaigns/{campaign_id}/attachments", content_type="multipart/form-data",
                    data={"file": (io.BytesIO(data), name, ctype)})
    assert r.status_code == 302


def campaign_status(db, campaign_id):
    return db.execute("SELECT status FROM campaigns WHERE id = %s", (campaign_id,)).fetchone()["status"]


def test_campaign_reaches_every_subscribed_recipient_once(client, db, smtp, workers):
    list_id = make_list(client, db, "E2E")
    rows = [(f"person{i}@example.com", f"Person {i}", f"City{i}") for i in range(199)]
    rows.append(("PERSON7@example.com", "Person Seven Again", "Elsewhere"))  # a duplicate address
    r = upload_csv(client, list_id, rows)
    assert b"199 new" in r.data and b"1 updated" in r.data
    db.execute("UPDATE contacts SET status = 'unsubscribed' WHERE email IN "
               "('person1@example.com', 'person2@example.com', 'person3@example.com')")

    cid = make_campaign(client, db, list_id)
    attach(client, cid, "cv.pdf", PDF_CV)
    attach(client, cid, "cover-letter.pdf", PDF_LETTER)

    r = client.post(f"/campaigns/{cid}/send", follow_redirects=True)
    assert b"Sending to 196 recipients" in r.data
    wait_for(lambda: campaign_status(db, cid) == "completed", timeout=120, message="campaign completed")
    assert db.execute("SELECT count(*) AS n FROM delivery_claims WHERE campaign_id = %s",
                      (cid,)).fetchone()["n"] == 0, "every batch settles its claims"

    assert smtp.count() == 196
    received = {m["To"].addresses[0].addr_spec.lower(): m for m in smtp.parsed()}
    assert len(received) == 196
    assert not {"person1@example.com", "person2@example.com", "person3@example.com"} & received.keys()
    contacts = {r["email"]: r for r in db.execute("SELECT * FROM contacts").fetchall()}
    for addr, msg in received.items():
        contact = contacts[addr]
        assert msg["Subject"] == f"Hi {contact['name']}"
        assert msg["X-Campaign-ID"] == str(cid)
        assert msg["List-Unsubscribe"].startswith("<http://127.0.0.1:5000/u/")
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["Reply-To"] == "replies@example.org"
        assert msg.get_content_type() == "multipart/mixed"
        html = msg.get_body(("html",)).get_content()
        text = msg.get_body(("plain",)).get_content()
        assert f"Dear {contact['name']}," in html and 'style="color: #123456' in html
        assert f"How is {contact['attributes']['city']}?" in text and f"Your id is {contact['id']}" in text
        files = {p.get_filename(): p.get_payload(decode=True) for p in msg.iter_attachments()}
        assert files == {"cv.pdf": PDF_CV, "cover-letter.pdf": PDF_LETTER}
    assert contacts["person7@example.com"]["name"] == "Person Seven Again"

    deliveries = db.execute("SELECT email, status, message_id, smtp_reply FROM deliveries WHERE campaign_id = %s",
                            (cid,)).fetchall()
    assert len(deliveries) == 196 and {d["status"] for d in deliveries} == {"sent"}
    assert {d["message_id"] for d in deliveries} == {m["Message-ID"] for m in received.values()}
    assert all(d["smtp_reply"].startswith("250") for d in deliveries)
    sent_events = db.execute("SELECT count(*) AS n, count(DISTINCT delivery_id) AS d FROM journal "
                             "WHERE campaign_id = %s AND kind = 'delivery.sent'", (cid,)).fetchone()
    assert sent_events == {"n": 196, "d": 196}
    kinds = {r["kind"] for r in db.execute("SELECT kind FROM journal WHERE campaign_id = %s", (cid,))}
    assert {"campaign.running", "campaign.materialised", "campaign.completed"} <= kinds
    stats = client.get(f"/api/campaigns/{cid}/stats").get_json()
    assert stats["status"] == "completed" and stats["counts"]["sent"] == 196 and stats["counts"]["total"] == 196

    # A second Send changes nothing.
    r = client.post(f"/campaigns/{cid}/send", follow_redirects=True)
    assert b"already completed" in r.data
    assert db.execute("SELECT count(*) AS n FROM deliveries WHERE campaign_id = %s", (cid,)).fetchone()["n"] == 196
    import time
    time.sleep(1)
    assert smtp.count() == 196


def test_a_contact_deleted_after_send_fails_its_email_and_the_campaign_completes(db, smtp, workers):
    """The foreign key sets a deleted contact's deliveries to no contact; they used to stay
    open for ever, so the campaign never completed."""
    from tests.delivery_kit import deliveries, seed_campaign, start, wait_status

    workers.stop()
    cid = seed_campaign(db, 30, "deleted-after-send")
    start(cid)
    gone = [r["email"].lower() for r in db.execute(
        "DELETE FROM contacts WHERE id IN (SELECT contact_id FROM deliveries WHERE campaign_id = %s "
        "ORDER BY id LIMIT 5) RETURNING email", (cid,))]
    workers.start_more()
    wait_status(db, cid, "completed")
    rows = deliveries(db, cid)
    assert sorted(a for a, r in rows.items() if r["status"] == "failed") == sorted(gone)
    assert all("contact was deleted" in rows[a]["last_error"] for a in gone)
    sent = sorted(a for a, r in rows.items() if r["status"] == "sent")
    assert len(sent) == len(rows) - 5 and sorted(smtp.recipients()) == sent
