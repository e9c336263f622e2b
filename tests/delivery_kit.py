"""Helpers for the delivery and fault tests: campaigns made in one SQL statement, the
broker poked the way ops poke it, and the one check every fault test ends with (what the
SMTP server received against `deliveries`: lost = 0, silent duplicates = 0)."""
import json
import os
from collections import Counter
from urllib.parse import quote

import pika
import requests

from app.broker_setup import _api, vhost_of
from tests.conftest import wait_for

BODY = "<p>Hello {{ contact.name }}, number {{ contact.id }}.</p><p><a href=\"{{ unsubscribe_url }}\">stop</a></p>"


def seed_campaign(db, n: int, prefix: str, max_attempts: int = 3, emails: list[str] | None = None) -> int:
    """A draft campaign to a new list of `n` contacts <prefix><i>@example.com (or `emails`)."""
    addresses = emails or [f"{prefix}{i}@example.com" for i in range(n)]
    list_id = db.execute("INSERT INTO lists (name) VALUES (%s) RETURNING id", (f"list {prefix}",)).fetchone()["id"]
    db.execute("""
        WITH c AS (INSERT INTO contacts (email, name) SELECT e, 'Person ' || ord FROM unnest(%s::text[])
                   WITH ORDINALITY AS x(e, ord) ON CONFLICT ((lower(email::text)) COLLATE "C") DO UPDATE SET name = EXCLUDED.name RETURNING id)
        INSERT INTO list_members (list_id, contact_id) SELECT %s, id FROM c""", (addresses, list_id))
    return db.execute("""INSERT INTO campaigns (name, from_email, subject, body_html, list_id, max_attempts)
                         VALUES (%s, 'sender@example.org', 'Hi {{ contact.name }}', %s, %s, %s) RETURNING id""",
                      (f"campaign {prefix}", BODY, list_id, max_attempts)).fetchone()["id"]


def start(cid: int) -> dict:
    from app.services import campaign as campaigns

    return campaigns.start(cid, source="ui")


def status(db, cid: int) -> str:
    return db.execute("SELECT status FROM campaigns WHERE id = %s", (cid,)).fetchone()["status"]


def wait_status(db, cid: int, wanted, timeout=120) -> str:
    wanted = {wanted} if isinstance(wanted, str) else set(wanted)
    return wait_for(lambda: status(db, cid) in wanted and status(db, cid), timeout=timeout,
                    message=f"campaign {cid} to be {'/'.join(sorted(wanted))} (now {status(db, cid)})")


def deliveries(db, cid: int) -> dict[str, dict]:
    rows = db.execute("SELECT * FROM deliveries WHERE campaign_id = %s", (cid,)).fetchall()
    return {r["email"].lower(): r for r in rows}


def kinds(db, cid: int) -> Counter:
    return Counter(r["kind"] for r in db.execute("SELECT kind FROM journal WHERE campaign_id = %s", (cid,)))


def assert_nothing_lost_nothing_doubled(db, smtp, cid: int, allow_unknown: bool = False) -> dict:
    """Every recipient received at most once; every `sent` delivery received exactly once;
    nothing received that the database does not account for; nothing left open."""
    got = Counter(smtp.recipients())
    rows = deliveries(db, cid)
    doubled = {a: n for a, n in got.items() if n > 1 and a in rows}
    assert not doubled, f"received more than once: {list(doubled.items())[:10]}"
    sent_missing = [a for a, r in rows.items() if r["status"] == "sent" and got[a] != 1]
    assert not sent_missing, f"sent in the database but not received: {sent_missing[:10]}"
    unaccounted = [a for a in got if a in rows and rows[a]["status"] not in ("sent", "unknown")]
    assert not unaccounted, f"received but recorded as {[(a, rows[a]['status']) for a in unaccounted[:10]]}"
    open_rows = [a for a, r in rows.items() if r["status"] in ("queued", "retry", "sending")]
    assert not open_rows, f"left open: {open_rows[:10]}"
    if not allow_unknown:
        assert not [a for a, r in rows.items() if r["status"] == "unknown"]
    by_status = Counter(r["status"] for r in rows.values())
    # Completion reads the counters, never the rows: they must agree exactly.
    counters = {r["status"]: r["n"] for r in db.execute(
        "SELECT status, sum(delta)::bigint AS n FROM delivery_counts WHERE campaign_id = %s"
        " GROUP BY status HAVING sum(delta) <> 0", (cid,)).fetchall()}
    assert counters == dict(by_status), f"counters {counters} disagree with the rows {dict(by_status)}"
    return by_status


def publish(routing_key: str, body: bytes, exchange: str = "") -> None:
    """A message published by hand, as from the management console's Publish form."""
    connection = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange=exchange, routing_key=routing_key, body=body,
                              properties=pika.BasicProperties(delivery_mode=2), mandatory=True)
    finally:
        connection.close()


def console(campaign, action, routing_key="campaign.any") -> None:
    publish(routing_key, json.dumps({"campaign": campaign, "action": action}).encode(), exchange="campaign.control")


def management(method: str, path: str, **kwargs):
    base, auth = _api(os.environ.get("RABBITMQ_API", "http://guest:guest@127.0.0.1:15672/api"))
    r = requests.request(method, f"{base}{path}", auth=auth, timeout=10, **kwargs)
    r.raise_for_status()
    return r


def purge(queue: str) -> None:
    """The console's "Purge Messages" button, through the same management HTTP API."""
    vhost = quote(vhost_of(os.environ["AMQP_URL"]), safe="")
    management("DELETE", f"/queues/{vhost}/{quote(queue, safe='')}/contents")
