"""Fault test 7: malformed messages published by hand onto `prepare` and `dispatch` (not JSON,
an unknown actor, missing fields, arguments of the wrong shape) end in the dead letters with
a reason, visible in the UI; the workers keep running and keep sending."""
import json
import uuid

from tests.conftest import wait_for
from tests.delivery_kit import assert_nothing_lost_nothing_doubled, publish, seed_campaign, start, wait_status


def dramatiq_message(queue, actor, args, **extra):
    return json.dumps({"queue_name": queue, "actor_name": actor, "args": args, "kwargs": {}, "options": {},
                       "message_id": str(uuid.uuid4()), "message_timestamp": 0, **extra}).encode()


BAD = [
    ("prepare", b"this is not json {", "not JSON"),
    ("dispatch", b"\x00\xff\xfe binary", "the body is not UTF-8 text"),
    ("prepare", dramatiq_message("prepare", "no_such_actor", ["one", [1]]), "unknown actor 'no_such_actor'"),
    ("dispatch", dramatiq_message("dispatch", "drop_tables", []), "unknown actor 'drop_tables'"),
    ("prepare", json.dumps({"actor_name": "prepare", "queue_name": "prepare"}).encode(),
     "not a Dramatiq message (missing or unexpected fields"),
    ("prepare", dramatiq_message("prepare", "prepare", []), "missing a required argument: 'campaign_id'"),
    ("prepare", dramatiq_message("prepare", "prepare", [1, "1,2,3"]), "delivery_ids is not a valid list"),
    ("dispatch", dramatiq_message("dispatch", "dispatch", [1, [{"d": 1, "to": "x@example.com"}]]),
     "emails is not a valid list"),
    ("dispatch", dramatiq_message("dispatch", "dispatch", [1, [], "extra"]), "too many positional arguments"),
    ("prepare", b"[1, 2, 3]", "the JSON is not an object"),
    # Integers no bigint holds: orjson reads one beyond 64 bits as a float, json (the fallback
    # for NaN and the like) as an int; either way refused at once, never retried.
    ("prepare", dramatiq_message("prepare", "prepare", [2**64, [1]]), "campaign_id is not a valid int"),
    ("prepare", dramatiq_message("prepare", "prepare", [2**63, [float("nan")]]), "campaign_id is not a valid int"),
    ("dispatch", dramatiq_message("dispatch", "dispatch", [1, [{"d": 2**70, "to": "x@example.com", "n": "",
                                                                "s": "s", "h": "h", "t": "t", "u": None}]]),
     "emails is not a valid list"),
    ("prepare", dramatiq_message("prepare", "prepare", [1, [-2**63 - 1]]), "delivery_ids is not a valid list"),
]


def test_malformed_messages_become_dead_letters_and_workers_carry_on(client, db, smtp, workers, services):
    services("deadletters")
    before = db.execute("SELECT coalesce(max(id), 0) AS id FROM dead_letters").fetchone()["id"]
    for queue, body, _ in BAD:
        publish(queue, body)

    letters = wait_for(lambda: (lambda rows: len(rows) >= len(BAD) and rows)(db.execute(
        "SELECT id, queue_name, reason, actor_name, message, raw, status FROM dead_letters WHERE id > %s ORDER BY id",
        (before,)).fetchall()), timeout=60, message="every malformed message in the dead letters")
    assert len(letters) == len(BAD)
    reasons = sorted(letter["reason"] for letter in letters)
    for queue, body, expected in BAD:
        match = [letter for letter in letters if expected in letter["reason"] and letter["queue_name"] == queue
                 and letter["raw"] is not None and bytes(letter["raw"]) == body]  # kept as it came
        assert match, f"no dead letter on {queue} says {expected!r} about {body[:80]!r}: {reasons}"
        assert match[0]["message"] is None  # not replayable
    assert {letter["status"] for letter in letters} == {"open"}
    assert workers.proc.poll() is None and workers.child_pids()

    # Visible, with reasons, in the UI; discard works; replay is not offered.
    page = client.get("/dead-letters?unassigned=1").get_data(as_text=True)
    assert "unknown actor &#39;drop_tables&#39;" in page and "not JSON" in page and "class=\"link replay\"" not in page
    first = letters[0]["id"]
    assert b"discarded" in client.post(f"/dead-letters/{first}/discard", follow_redirects=True).data
    assert b"no longer open" in client.post(f"/dead-letters/{first}/replay", follow_redirects=True).data
    kinds = {r["kind"] for r in db.execute("SELECT kind FROM journal")}
    assert {"deadletter.received", "deadletter.discarded"} <= kinds

    # The same workers still send a campaign end to end.
    cid = seed_campaign(db, 30, "aftermalformed")
    start(cid)
    wait_status(db, cid, "completed", timeout=60)
    assert assert_nothing_lost_nothing_doubled(db, smtp, cid) == {"sent": 30}
    assert workers.proc.poll() is None


# The encoder (consumers/encoding.py) against Dramatiq's own JSONEncoder, without services.
ODD_BODIES = [
    b"this is not json {", b"\x00\xff\xfe binary", b"", b"[NaN, Infinity, -Infinity, 1e400]", b'["\\ud800"]',
    b"\xef\xbb\xbf[1]", b"[" * 5000, b'{"a": 1, "a": 2}', b"[18446744073709551615, -9223372036854775808]",
    "[\"Zoë 日本 🎉\"]".encode(), b'{"args": [1, 2]} trailing', b"[1,]", b"'single'", b'"\\u0000"',
]


def _outcome(fn, arg):
    try:
        return "ok", fn(arg)
    except Exception as exc:
        return "error", type(exc).__name__


def test_encoder_decodes_what_dramatiqs_json_encoder_decodes():
    import math

    from dramatiq.encoder import JSONEncoder

    from consumers.encoding import OrjsonEncoder

    ours, theirs = OrjsonEncoder(), JSONEncoder()
    for body in ODD_BODIES:
        a, b = _outcome(ours.decode, body), _outcome(theirs.decode, body)
        if a[0] == "ok" and b[0] == "ok" and body.startswith(b"[NaN"):
            assert [math.isnan(x) or math.isinf(x) for x in a[1]] == [True] * 4, body
        else:
            assert a == b, body
    # Beyond 64 bits orjson gives a float where json gives an int: the validation refuses both.
    assert ours.decode(b"[18446744073709551616]") == [float(2**64)]
    assert theirs.decode(b"[18446744073709551616]") == [2**64]


def test_encoder_writes_plain_json_and_falls_back_where_orjson_refuses():
    import json

    from consumers.encoding import OrjsonEncoder

    encoder = OrjsonEncoder()
    data = {"args": [1, [{"d": 5, "n": "Zoë \"q\" \\ 日本 🎉", "u": None}]], "kwargs": {}, "options": {"eta": 1}}
    assert json.loads(encoder.encode(data)) == data and encoder.decode(encoder.encode(data)) == data
    for odd in ({"args": [2**64, -2**63 - 1]}, {"args": [{1: "int key"}]}, {"args": ["\ud800"]}):
        body = encoder.encode(odd)
        assert body == json.dumps(odd, separators=(",", ":")).encode()  # as Dramatiq's JSONEncoder writes it
    assert encoder.decode(encoder.encode({"args": ["\ud800"]})) == {"args": ["\ud800"]}  # json reads it back
    import datetime
    try:
        encoder.encode({"args": [datetime.date.today()]})
    except TypeError:
        pass
    else:
        raise AssertionError("a date must not be sent (json refuses it too)")
