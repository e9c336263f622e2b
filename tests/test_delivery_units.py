"""Pure pieces of the delivery path: backoff bounds, reply classification, message shapes,
console command parsing."""
import json

import pytest

from app.config import Config
from app.smtp import SendOutcome, SmtpServer
from consumers.control import Rejected, parse
from consumers.dispatch import dispatch, is_unknown_user, retry_delay_ms
from consumers.messages import problem
from consumers.prepare import prepare

CONSUMER_TIMEOUT_MS = 30 * 60 * 1000  # RabbitMQ 3.10's default


def test_backoff_grows_with_jitter_and_stays_under_the_consumer_timeout():
    for attempt in range(1, 21):
        base = min(Config.RETRY_MAX_MS, Config.RETRY_BASE_MS * 2 ** (attempt - 1))
        delays = {retry_delay_ms(attempt) for _ in range(50)}
        assert all(base / 2 <= d <= base for d in delays), attempt
        assert max(delays) < CONSUMER_TIMEOUT_MS
        assert len(delays) > 1  # jitter: retries of one batch do not come back all at once
    assert Config.RETRY_MAX_MS <= 20 * 60 * 1000


@pytest.mark.parametrize("code, reply, unknown", [
    (550, "RCPT TO: 550 5.1.1 <x@example.com>: Recipient address rejected: User unknown", True),
    (550, "DATA: 550 5.1.1 no such user here", True),
    (551, "RCPT TO: 551 user not local", True),
    (550, "DATA: 550 5.7.1 message content rejected as spam", False),
    (554, "DATA: 554 5.7.1 mailbox unavailable", False),
    (452, "RCPT TO: 452 4.2.2 mailbox full", False),
])
def test_only_a_550_class_unknown_mailbox_is_suppressed(code, reply, unknown):
    assert is_unknown_user(SendOutcome(reply, permanent=code >= 500, code=code)) is unknown


EMAIL = {"d": 1, "to": "a@example.com", "n": "A", "s": "S", "h": "<p>h</p>", "t": "t", "u": None}


@pytest.mark.parametrize("actor, args, kwargs, expected", [
    (dispatch, (1, [EMAIL]), {}, None),
    (dispatch, (1, []), {}, "emails is not a valid list"),
    (dispatch, (1, [{**EMAIL, "d": "1"}]), {}, "emails is not a valid list"),
    (dispatch, (True, [EMAIL]), {}, "campaign_id is not a valid int"),
    (dispatch, (1,), {}, "missing a required argument: 'emails'"),
    (prepare, (1, [1, 2]), {"urgent": True}, None),
    (prepare, (1, [1, 2]), {"urgent": "yes"}, "urgent is not a valid bool"),
    (prepare, (1, [1, 2], False, 4), {}, "too many positional arguments"),
    (prepare, (1, list(range(10_001))), {}, "delivery_ids is not a valid list"),
])
def test_message_shapes_are_checked_against_the_actor(actor, args, kwargs, expected):
    found = problem(actor, args, kwargs)
    assert found is None if expected is None else expected in found


@pytest.mark.parametrize("body, result", [
    (b'{"campaign": 12, "action": "pause"}', (12, "pause")),
    (b'{"campaign": "12", "action": " STOP "}', (12, "stop")),
    (b'{"campaign": 12, "action": "resume", "note": "from ops"}', (12, "resume")),
    (b'{"campaign": 0, "action": "pause"}', '"campaign" must be a campaign number'),
    (b'{"campaign": 12.5, "action": "pause"}', '"campaign" must be a campaign number'),
    (b'{"campaign": 12, "action": ["pause"]}', '"action" must be one of'),
    (b'{"campaign": 12}', '"action" must be one of'),
    (b'null', "must be a JSON object"),
    (b"", "not JSON"),
    (json.dumps({"campaign": 1, "action": "x" * 5000}).encode(), "over the limit"),
])
def test_console_commands_are_parsed_strictly(body, result):
    if isinstance(result, tuple):
        assert parse(body) == result
    else:
        with pytest.raises(Rejected, match=result.replace("[", r"\[")):
            parse(body)


def test_smtp_urls_carry_the_sending_options():
    s = SmtpServer.from_url("smtp://me%40x.org:p%3Ass@mail.example.com:587?starttls=1&max_connections=2&rate=12.5"
                            "&timeout=7&verify=0")
    assert (s.host, s.port, s.tls, s.username, s.password) == ("mail.example.com", 587, "starttls", "me@x.org", "p:ss")
    assert (s.max_connections, s.rate, s.timeout, s.verify) == (2, 12.5, 7.0, False)
    assert SmtpServer.from_url("smtps://mail.example.com").port == 465
