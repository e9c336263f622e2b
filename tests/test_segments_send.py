"""Issue 3 end to end: a segment built in the UI, v1 then v2, a campaign to v2 with the merge
example, real Dramatiq workers and the real SMTP server: exactly v2's recipients get an email,
each filled with the open offers of the contact's city."""
import json

from psycopg.types.json import Jsonb

from tests.conftest import wait_for
from tests.test_send_e2e import campaign_status, make_campaign

BODY = """<html><body><p>Dear {{ contact.name }},</p>
<p>Open positions near you:</p>
<ul>{% for offer in data.offers %}<li class="offer">{{ offer.title }} ({{ offer.url }})</li>{% else %}<li>none yet</li>{% endfor %}</ul>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>"""
CITIES = ["Wesby", "Wolle", "Wumba"]  # this test's own: other tests add offers too


def test_a_campaign_to_v2_reaches_exactly_v2_with_merge_data(app, client, db, smtp, workers):
    for i in range(30):
        db.execute("INSERT INTO contacts (email, name, attributes, tags, status) VALUES (%s, %s, %s, %s, %s)",
                   (f"w{i}@seg-w.test", f"Worker {i}", Jsonb({"city": CITIES[i % 3], "age": str(20 + i)}),
                    ["news"] if i % 2 else ["jobs"], "unsubscribed" if i == 9 else "subscribed"))
    db.execute("INSERT INTO offers (title, city, url) VALUES ('Baker', 'wesby', 'https://jobs.example/baker'), "
               "('Pilot', 'Wesby', 'https://jobs.example/pilot'), ('Chef', 'Wolle', 'https://jobs.example/chef'), "
               "('Old job', 'Wumba', '')")
    db.execute("UPDATE offers SET open = false WHERE title = 'Old job'")
    registered = app.test_cli_runner().invoke(args=["segments", "register"])
    assert registered.exit_code == 0, registered.output
    merge_id = db.execute("SELECT id FROM procedure_versions WHERE fn_name = 'merge_offers_v1'").fetchone()["id"]

    mine = {"type": "condition", "field": "email", "op": "ends_with", "value": "@seg-w.test"}
    v1 = {"type": "group", "op": "and", "children": [mine, {"type": "condition", "field": "tags", "op": "contains",
                                                              "value": "news"}]}
    v2 = {"type": "group", "op": "and", "children": [mine, {"type": "group", "op": "or", "children": [
        {"type": "condition", "field": "attribute", "key": "city", "attr_type": "text", "op": "in",
         "value": ["Wesby", "Wumba"]},
        {"type": "condition", "field": "attribute", "key": "age", "attr_type": "number", "op": "gt", "value": "45"}]}]}
    r = client.post("/segments/new", data={"name": "Send target", "rules": json.dumps(v1)})
    proc_id = int(r.headers["Location"].rsplit("/", 1)[-1])
    assert client.post(f"/segments/{proc_id}/versions", data={"rules": json.dumps(v2)}).status_code == 302
    v2_id = db.execute("SELECT id FROM procedure_versions WHERE fn_name = 'segment_send_target_v2'").fetchone()["id"]

    cid = make_campaign(client, db, 0, target="segment", segment_version_id=v2_id, merge_version_id=merge_id,
                        subject="Jobs for {{ contact.name }}", body_html=BODY)
    r = client.post(f"/campaigns/{cid}/send", follow_redirects=True)
    expected = {r["email"]: r for r in db.execute(
        "SELECT email::text AS email, name, attributes->>'city' AS city FROM contacts WHERE email::text LIKE "
        "'%@seg-w.test' AND status = 'subscribed' AND (attributes->>'city' IN ('Wesby', 'Wumba') "
        "OR (attributes->>'age')::int > 45)")}
    assert f"Sending to {len(expected)} recipients.".encode() in r.data
    wait_for(lambda: campaign_status(db, cid) == "completed", timeout=120, message="campaign completed")

    received = {m["To"].addresses[0].addr_spec.lower(): m for m in smtp.parsed()}
    assert set(received) == set(expected) and smtp.count() == len(expected)
    offers = {"Wesby": ["Pilot (https://jobs.example/pilot)", "Baker (https://jobs.example/baker)"],
              "Wolle": ["Chef (https://jobs.example/chef)"], "Wumba": []}
    for addr, msg in received.items():
        html = msg.get_body(("html",)).get_content()
        shown = [part.split("</li>")[0] for part in html.split('<li class="offer">')[1:]]
        assert shown == offers[expected[addr]["city"]], (addr, shown)
        if not shown:
            assert "none yet" in html
    row = db.execute("SELECT segment_version_id, merge_version_id FROM campaigns WHERE id = %s", (cid,)).fetchone()
    assert row == {"segment_version_id": v2_id, "merge_version_id": merge_id}
