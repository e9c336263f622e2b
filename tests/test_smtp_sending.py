"""Sending well, against real aiosmtpd servers: connection reuse, a cap on connections and a
messages-per-second limit per server, PIPELINING when offered (and correct without it),
STARTTLS with login, replies classified at every step, and failover to the next server when
one keeps failing, journaled, through the real workers."""
import os
import socket
import subprocess
import threading
import time

import pytest
from aiosmtpd.smtp import AuthResult

from app.smtp import SendOutcome, SmtpConnection, SmtpPool, SmtpServer, send_once, servers_from_urls
from tests.conftest import free_port
from tests.delivery_kit import assert_nothing_lost_nothing_doubled, deliveries, seed_campaign, start, wait_status
from tests.smtp_server import SmtpServer as FixtureServer

MESSAGE = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\n\r\n.leading dot\r\nbody\r\n"


def server_for(smtp, **options) -> SmtpServer:
    query = "&".join(f"{k}={v}" for k, v in {"timeout": 5, **options}.items())
    return SmtpServer.from_url(f"smtp://127.0.0.1:{smtp.port}?{query}")


@pytest.mark.parametrize("pipelining", [True, False])
def test_one_connection_carries_many_messages_with_or_without_pipelining(smtp, pipelining):
    smtp.pipelining = pipelining
    conn = SmtpConnection(server_for(smtp))
    try:
        replies = [conn.send("a@example.org", f"r{i}@example.com", MESSAGE) for i in range(20)]
        assert conn.pipelining is pipelining
    finally:
        conn.close()
    assert all(r.startswith("250") for r in replies)
    assert smtp.count() == 20 and smtp.sessions == 1
    assert b"\r\n.leading dot\r\n" in smtp.messages[0][2]  # dot-stuffing undone by the server, as sent


def test_pipelining_sends_the_envelope_in_one_write():
    """A bare socket server that answers nothing until it has read up to DATA: a client that
    waited for each reply (no pipelining) would never get there."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen = {}

    def serve():
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 raw ESMTP\r\n")
            lines.readline()  # EHLO
            conn.sendall(b"250-raw\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            envelope = [lines.readline() for _ in range(3)]  # read before any reply
            seen["envelope"] = envelope
            conn.sendall(b"250 sender ok\r\n250 recipient ok\r\n354 go on\r\n")
            body = b""
            while not body.endswith(b"\r\n.\r\n"):
                body += lines.readline()
            seen["body"] = body
            conn.sendall(b"250 2.0.0 queued as RAW1\r\n")
            lines.readline()  # QUIT
            conn.sendall(b"221 bye\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    conn = SmtpConnection(SmtpServer.from_url(f"smtp://127.0.0.1:{port}?timeout=5"))
    try:
        assert conn.send("a@example.org", "p@example.com", MESSAGE) == "250 2.0.0 queued as RAW1"
    finally:
        conn.close()
        thread.join(5)
        listener.close()
    assert seen["envelope"] == [b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<p@example.com>\r\n", b"DATA\r\n"]
    assert b"\r\n..leading dot\r\n" in seen["body"]  # dot-stuffed on the wire


@pytest.mark.parametrize("pipelining", [True, False])
def test_refusals_at_each_step_are_classified_and_the_connection_goes_on(smtp, pipelining):
    smtp.pipelining = pipelining
    smtp.rcpt_behaviour = lambda rcpt: {"gone@example.com": "550 5.1.1 no such user",
                                        "later@example.com": "451 4.3.0 try later"}.get(rcpt)
    smtp.behaviour = lambda rcpt, attempt: "552 5.3.4 too big" if rcpt == "big@example.com" else None
    conn = SmtpConnection(server_for(smtp))
    try:
        with pytest.raises(SendOutcome) as gone:
            conn.send("a@example.org", "gone@example.com", MESSAGE)
        with pytest.raises(SendOutcome) as later:
            conn.send("a@example.org", "later@example.com", MESSAGE)
        with pytest.raises(SendOutcome) as big:
            conn.send("a@example.org", "big@example.com", MESSAGE)
        with pytest.raises(SendOutcome) as bad:
            conn.send("a@example.org", "x@example.com\r\nRCPT TO:<y@example.com>", MESSAGE)
        assert conn.send("a@example.org", "fine@example.com", MESSAGE).startswith("250")
    finally:
        conn.close()
    assert (gone.value.permanent, gone.value.code, gone.value.reply) == (True, 550, "RCPT TO: 550 5.1.1 no such user")
    assert (later.value.permanent, later.value.code, later.value.connection) == (False, 451, False)
    assert (big.value.permanent, big.value.reply) == (True, "DATA: 552 5.3.4 too big")
    assert bad.value.permanent and "not a usable address" in bad.value.reply
    assert smtp.recipients() == ["fine@example.com"] and smtp.sessions == 1


def test_a_stale_connection_is_replaced_without_losing_the_message(smtp):
    conn = SmtpConnection(server_for(smtp))
    try:
        conn.send("a@example.org", "one@example.com", MESSAGE)
        smtp.stop()
        smtp.start()  # the server went away between two messages; the idle connection is dead
        assert conn.send("a@example.org", "two@example.com", MESSAGE).startswith("250")
    finally:
        conn.close()
    assert smtp.recipients() == ["one@example.com", "two@example.com"]


def test_the_connection_cap_and_the_rate_limit_hold_across_threads(smtp):
    pool = SmtpPool([server_for(smtp, max_connections=2, rate=40)])
    errors = []

    def work(n):
        sender = pool.sender()
        try:
            for i in range(10):
                sender.send("a@example.org", f"t{n}-{i}@example.com", MESSAGE)
        except SendOutcome as exc:
            errors.append(exc)
        finally:
            sender.release()

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert not errors and smtp.count() == 60
    assert smtp.sessions <= 2  # never more than two connections, each reused
    assert elapsed >= 59 / 40  # 60 messages spaced at 40 per second at the least


@pytest.fixture
def tls_server(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login, auth_data.password) == (b"mailer", b"s3cret pass")
        logins.append((mechanism, auth_data.login, ok))
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    server = FixtureServer("127.0.0.1", free_port(), tls_context=context, require_starttls=True,
                        authenticator=authenticator, auth_require_tls=True)
    server.start()
    server.logins, server.cafile = logins, cert
    yield server
    server.stop()


def test_starttls_and_login(tls_server):
    url = f"smtp://mailer:s3cret%20pass@127.0.0.1:{tls_server.port}?starttls=1&cafile={tls_server.cafile}"
    assert send_once(servers_from_urls(url), "a@example.org", "tls@example.com", MESSAGE).startswith("250")
    assert tls_server.recipients() == ["tls@example.com"] and tls_server.logins[-1][2]

    wrong = url.replace("s3cret%20pass", "wrong")
    with pytest.raises(SendOutcome) as refused:
        send_once(servers_from_urls(wrong), "a@example.org", "tls@example.com", MESSAGE)
    assert "login refused" in refused.value.reply and refused.value.connection
    plain = f"smtp://127.0.0.1:{tls_server.port}"  # no STARTTLS: the server refuses the mail
    with pytest.raises(SendOutcome) as no_tls:
        send_once(servers_from_urls(plain), "a@example.org", "tls@example.com", MESSAGE)
    assert "530" in no_tls.value.reply
    unverified = f"smtp://mailer:s3cret%20pass@127.0.0.1:{tls_server.port}?starttls=1"  # self-signed: refused
    with pytest.raises(SendOutcome) as untrusted:
        send_once(servers_from_urls(unverified), "a@example.org", "tls@example.com", MESSAGE)
    assert "cannot connect" in untrusted.value.reply and "CERTIFICATE_VERIFY_FAILED" in untrusted.value.reply
    assert tls_server.count() == 1


@pytest.mark.parametrize("urls, message", [
    ("http://127.0.0.1:25", "must look like smtp://host:port"),
    ("smtp://127.0.0.1:25?rate=fast", "bad option"),
    ("smtp://127.0.0.1:25?max_connections=0", "max_connections >= 1"),
    (" , ", "no SMTP server configured"),
])
def test_bad_smtp_urls_are_refused_clearly(urls, message):
    with pytest.raises(ValueError, match=message):
        servers_from_urls(urls)


def test_failover_to_the_next_server_when_one_keeps_failing(db, smtp, workers, services):
    dead = f"smtp://127.0.0.1:{free_port()}?timeout=2"  # nothing listens there
    workers.stop()
    workers.start_more(threads=1, extra_env={"SMTP_URLS": f"{dead},{os.environ['SMTP_URL']}",
                                             "SMTP_COOLDOWN_SECONDS": "60"})
    services("scheduler")
    cid = seed_campaign(db, 20, "failover", max_attempts=3)
    start(cid)
    wait_status(db, cid, "completed", timeout=60)
    assert assert_nothing_lost_nothing_doubled(db, smtp, cid) == {"sent": 20}
    failover = db.execute("SELECT source, detail FROM journal WHERE campaign_id = %s AND kind = 'smtp.failover'",
                          (cid,)).fetchall()
    assert len(failover) == 1 and failover[0]["source"] == "dispatch"
    detail = failover[0]["detail"]
    assert detail["server"] == dead.split("//")[1].split("?")[0] and detail["to"] == f"127.0.0.1:{smtp.port}"
    assert "cannot connect" in detail["reason"] and detail["failures"] == 3
    tried = sorted(r["attempts"] for r in deliveries(db, cid).values())
    assert tried == [1] * 17 + [2] * 3  # three refused on the first server, then all on the second


# --- send_many: a batch over one connection, one result per message ----------------------

MAIL_FROM = "a@example.org"


def batch_messages(n: int) -> list[tuple[str, bytes]]:
    """Varied messages, each unique: lines starting with dots, a message starting with one,
    a dot alone on a line, CRLF everywhere (as app.mime builds them)."""
    items = []
    for i in range(n):
        body = (f"Subject: m{i}\r\n\r\n.starts with a dot {i}\r\n..two dots\r\n.\r\nmiddle\r\n"
                + "line\r\n" * (i % 7)).encode()
        items.append((f"b{i}@example.com", (b"." if i % 10 == 3 else b"") + body))
    return items


def received(smtp) -> dict[str, bytes]:
    with smtp.lock:
        return {m[1][0].lower(): m[2] for m in smtp.messages}


def is_outcome(result, **expected) -> bool:
    return isinstance(result, SendOutcome) and all(getattr(result, k) == v for k, v in expected.items())


@pytest.mark.parametrize("pipelining", [True, False])
def test_send_many_delivers_a_batch_byte_exact_on_one_connection(smtp, pipelining):
    smtp.pipelining = pipelining
    items = batch_messages(300)
    items += [("bare-lf@example.com", b"Subject: lf\n\nbare\nline ends\n.dot\n"),
              ("no-newline@example.com", b"Subject: x\r\n\r\nno newline at the end"),
              ("empty@example.com", b"")]
    sender = SmtpPool([server_for(smtp)]).sender()
    try:
        results = sender.send_many(MAIL_FROM, items)
    finally:
        sender.release()
    assert len(results) == len(items) and all(isinstance(r, str) and r.startswith("250 ") for r in results)
    got = received(smtp)
    for rcpt, message in items[:300]:
        assert got[rcpt] == message, rcpt  # byte for byte: dot-stuffing undone by the server
    assert got["bare-lf@example.com"] == b"Subject: lf\r\n\r\nbare\r\nline ends\r\n.dot\r\n"
    assert got["no-newline@example.com"] == b"Subject: x\r\n\r\nno newline at the end\r\n"
    assert got["empty@example.com"] == b"\r\n"  # as before: every message ends with a line end
    assert [m[1][0] for m in smtp.messages] == [rcpt for rcpt, _ in items]  # in order
    assert smtp.sessions == 1


@pytest.mark.parametrize("pipelining", [True, False])
def test_send_many_maps_mixed_replies_to_their_own_messages(smtp, pipelining):
    smtp.pipelining = pipelining
    smtp.rcpt_behaviour = lambda rcpt: {"gone": "550 5.1.1 no such user",
                                        "later": "451 4.3.0 try later"}.get(rcpt.split("-")[0])
    smtp.behaviour = lambda rcpt, attempt: {"grey": "451 4.7.1 greylisted",
                                            "big": "552 5.3.4 too big",
                                            "spam": "554 5.7.1 refused"}.get(rcpt.split("-")[0])
    kinds = ["ok", "gone", "ok", "later", "grey", "ok", "big", "spam", "ok", "gone", "gone", "ok"] * 5
    items = [(f"{kind}-{i}@example.com", MESSAGE) for i, kind in enumerate(kinds)]
    sender = SmtpPool([server_for(smtp)]).sender()
    try:
        results = sender.send_many(MAIL_FROM, items)
    finally:
        sender.release()
    for (rcpt, _), result in zip(items, results):
        kind = rcpt.split("-")[0]
        if kind == "ok":
            assert isinstance(result, str) and result.startswith("250"), rcpt
            continue
        assert isinstance(result, SendOutcome) and not result.connection and not result.deferred, rcpt
        expected = {"gone": (550, True, "RCPT TO: 550 5.1.1 no such user"),
                    "later": (451, False, "RCPT TO: 451 4.3.0 try later"),
                    "grey": (451, False, "DATA: 451 4.7.1 greylisted"),
                    "big": (552, True, "DATA: 552 5.3.4 too big"),
                    "spam": (554, True, "DATA: 554 5.7.1 refused")}[kind]
        assert (result.code, result.permanent, result.reply) == expected, rcpt
    assert sorted(smtp.recipients()) == sorted(r for r, _ in items if r.startswith("ok"))
    assert smtp.sessions == 1  # every refusal left the connection usable


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize("fault", ["drop", "421 at DATA", "421 at RCPT"])
def test_a_connection_ending_mid_batch_costs_one_message_and_the_rest_go_on(smtp, pipelining, fault):
    smtp.pipelining = pipelining
    victim = "b17@example.com"
    if fault == "421 at RCPT":
        smtp.rcpt_behaviour = lambda rcpt: "421 4.3.2 shutting down" if rcpt == victim else None
    else:
        verdict = "drop" if fault == "drop" else "421 4.3.2 too busy, closing"
        smtp.behaviour = lambda rcpt, attempt: verdict if rcpt == victim else None
    items = batch_messages(40)
    pool = SmtpPool([server_for(smtp)], failover_after=3)
    sender = pool.sender()
    try:
        results = sender.send_many(MAIL_FROM, items)
    finally:
        sender.release()
    lost = results[17]
    assert is_outcome(lost, permanent=False, connection=True, deferred=False)
    assert {"drop": "dropped during DATA", "421 at DATA": "DATA: 421 4.3.2 too busy",
            "421 at RCPT": "RCPT TO: 421 4.3.2 shutting down"}[fault] in lost.reply
    others = results[:17] + results[18:]
    assert all(isinstance(r, str) and r.startswith("250") for r in others)
    got = received(smtp)
    assert sorted(got) == sorted(r for r, _ in items if r != victim)
    assert all(got[r] == m for r, m in items if r != victim)  # each once, intact
    assert smtp.sessions == 2 and smtp.attempts[victim] == (0 if fault == "421 at RCPT" else 1)
    assert pool.states[0].failures == 0  # the successes after it closed the count again


def test_send_many_edge_input(smtp):
    sender = SmtpPool([server_for(smtp)]).sender()
    huge = b"Subject: huge\r\n\r\n" + (b"." + b"x" * 900 + b"\r\n") * 22_000  # ~20 MB, every line dot-led
    items = [("ok-1@example.com", MESSAGE),
             ("x@example.com\r\nRCPT TO:<y@example.com>", MESSAGE),
             ("nul\x00@example.com", MESSAGE),
             ("<angle>@example.com", MESSAGE),
             ("lf@example.com\n", MESSAGE),
             ("zoë@example.com", MESSAGE),  # the fixture offers SMTPUTF8
             ("huge@example.com", huge),
             ("ok-2@example.com", MESSAGE)]
    try:
        assert sender.send_many(MAIL_FROM, []) == []
        assert smtp.sessions == 0  # an empty batch does not even connect
        results = sender.send_many(MAIL_FROM, items)
        bad_sender = sender.send_many("a@example.org>\r\nRSET", [("ok-3@example.com", MESSAGE)])
    finally:
        sender.release()
    assert all(results[i].startswith("250") for i in (0, 5, 6, 7))
    for result in results[1:5]:
        assert is_outcome(result, permanent=True, connection=False) and "not a usable address" in result.reply
    assert is_outcome(bad_sender[0], permanent=True) and "not a usable address" in bad_sender[0].reply
    assert smtp.recipients() == ["ok-1@example.com", "zoë@example.com", "huge@example.com", "ok-2@example.com"]
    assert received(smtp)["huge@example.com"] == huge
    assert smtp.sessions == 1


def test_every_server_resting_defers_the_rest_of_the_batch():
    dead = SmtpServer.from_url(f"smtp://127.0.0.1:{free_port()}?timeout=2")
    pool = SmtpPool([dead], failover_after=1, cooldown=60)
    sender = pool.sender()
    try:
        results = sender.send_many(MAIL_FROM, [(f"d{i}@example.com", MESSAGE) for i in range(3)])
    finally:
        sender.release()
    assert is_outcome(results[0], connection=True, deferred=False) and "cannot connect" in results[0].reply
    assert all(is_outcome(r, deferred=True, permanent=False) and r.retry_after > 50 for r in results[1:])
    assert [kind for kind, _ in pool.drain_events()] == ["smtp.failover"]


def test_a_batch_goes_on_after_the_reused_connection_went_stale(smtp):
    sender = SmtpPool([server_for(smtp)]).sender()
    try:
        assert all(r.startswith("250") for r in sender.send_many(MAIL_FROM, batch_messages(3)))
        smtp.stop()
        smtp.start()  # the idle connection is dead; nothing of the next batch was begun on it
        results = sender.send_many(MAIL_FROM, [(f"s{i}@example.com", MESSAGE) for i in range(5)])
    finally:
        sender.release()
    assert all(isinstance(r, str) and r.startswith("250") for r in results)
    assert smtp.recipients()[-5:] == [f"s{i}@example.com" for i in range(5)]


def test_send_many_over_starttls_with_login(tls_server):
    url = f"smtp://mailer:s3cret%20pass@127.0.0.1:{tls_server.port}?starttls=1&cafile={tls_server.cafile}"
    sender = SmtpPool(servers_from_urls(url)).sender()
    items = batch_messages(50)
    try:
        results = sender.send_many(MAIL_FROM, items)
    finally:
        sender.release()
    assert all(isinstance(r, str) and r.startswith("250") for r in results)
    assert received(tls_server) == {r: m for r, m in items} and tls_server.sessions == 2  # EHLO before and after STARTTLS


class ScriptedServer:
    """A bare socket server playing one script per connection, for what aiosmtpd cannot
    show: what arrives in which order before any reply, and odd but legal replies."""

    def __init__(self, *scripts):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.errors = []
        self.thread = threading.Thread(target=self._serve, args=(scripts,), daemon=True)
        self.thread.start()

    def _serve(self, scripts):
        for script in scripts:
            conn, _ = self.listener.accept()
            with conn, conn.makefile("rb") as lines:
                try:
                    conn.sendall(b"220 raw ESMTP\r\n")
                    lines.readline()  # EHLO
                    conn.sendall(b"250-raw\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                    script(conn, lines)
                except Exception as exc:  # noqa: BLE001 - reported by the test
                    self.errors.append(exc)

    def server(self) -> SmtpServer:
        return SmtpServer.from_url(f"smtp://127.0.0.1:{self.port}?timeout=3")

    def close(self):
        self.thread.join(5)
        self.listener.close()


def read_data(lines) -> bytes:
    body = b""
    while not body.endswith(b"\r\n.\r\n"):
        body += lines.readline()
    return body


ENVELOPE = [b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<%s>\r\n", b"DATA\r\n"]


def envelope_for(rcpt: bytes) -> list[bytes]:
    return [ENVELOPE[0], ENVELOPE[1] % rcpt, ENVELOPE[2]]


def test_the_next_envelope_travels_with_the_data_before_its_reply():
    """The server answers a message's data only after it has read the next message's
    envelope: a client waiting for each data reply before the next MAIL would time out."""
    seen = []

    def script(conn, lines):
        assert [lines.readline() for _ in range(3)] == envelope_for(b"p0@example.com")
        conn.sendall(b"250 ok\r\n250 ok\r\n354 go on\r\n")
        seen.append(read_data(lines))
        assert [lines.readline() for _ in range(3)] == envelope_for(b"p1@example.com")  # no reply yet
        conn.sendall(b"250 2.0.0 queued as P0\r\n250 ok\r\n250 ok\r\n354 go on\r\n")
        seen.append(read_data(lines))
        conn.sendall(b"250 2.0.0 queued as P1\r\n")
        assert lines.readline().upper() == b"QUIT\r\n"
        conn.sendall(b"221 bye\r\n")

    raw = ScriptedServer(script)
    conn = SmtpConnection(raw.server())
    try:
        results = conn.send_many(MAIL_FROM, [("p0@example.com", MESSAGE), ("p1@example.com", MESSAGE)])
    finally:
        conn.close()
        raw.close()
    assert not raw.errors and results == ["250 2.0.0 queued as P0", "250 2.0.0 queued as P1"]
    assert all(b"\r\n..leading dot\r\n" in body for body in seen)


def test_a_data_opened_after_a_refused_recipient_is_ended_and_reset():
    def script(conn, lines):
        assert [lines.readline() for _ in range(3)] == envelope_for(b"no@example.com")
        conn.sendall(b"250 ok\r\n550 5.1.1 no such user\r\n354 go on anyway\r\n")
        rest = [lines.readline() for _ in range(5)]
        assert rest == [b".\r\n", b"RSET\r\n"] + envelope_for(b"yes@example.com"), rest
        conn.sendall(b"554 5.5.1 no valid recipients\r\n250 reset\r\n250 ok\r\n250 ok\r\n354 go on\r\n")
        read_data(lines)
        conn.sendall(b"250 2.0.0 queued\r\n")
        lines.readline()
        conn.sendall(b"221 bye\r\n")

    raw = ScriptedServer(script)
    conn = SmtpConnection(raw.server())
    try:
        results = conn.send_many(MAIL_FROM, [("no@example.com", MESSAGE), ("yes@example.com", MESSAGE)])
    finally:
        conn.close()
        raw.close()
    assert not raw.errors
    assert is_outcome(results[0], permanent=True, code=550) and results[0].reply == "RCPT TO: 550 5.1.1 no such user"
    assert results[1] == "250 2.0.0 queued"


def test_a_421_to_the_next_mail_on_a_reused_connection_is_stale_not_a_failure():
    """Servers answer the first command after their idle timeout with 421 and hang up
    (Postfix: "421 4.4.2 Error: timeout exceeded"): nothing was begun, so the message goes
    on over a fresh connection without an outcome of its own."""
    def first(conn, lines):
        assert [lines.readline() for _ in range(3)] == envelope_for(b"t0@example.com")
        conn.sendall(b"250 ok\r\n250 ok\r\n354 go on\r\n")
        read_data(lines)
        conn.sendall(b"250 2.0.0 queued as T0\r\n")
        lines.readline()  # the next MAIL FROM
        conn.sendall(b"421 4.4.2 raw Error: timeout exceeded\r\n")

    def second(conn, lines):
        assert [lines.readline() for _ in range(3)] == envelope_for(b"t1@example.com")
        conn.sendall(b"250 ok\r\n250 ok\r\n354 go on\r\n")
        read_data(lines)
        conn.sendall(b"250 2.0.0 queued as T1\r\n")
        lines.readline()
        conn.sendall(b"221 bye\r\n")

    raw = ScriptedServer(first, second)
    conn = SmtpConnection(raw.server())
    try:
        assert conn.send("a@example.org", "t0@example.com", MESSAGE) == "250 2.0.0 queued as T0"
        assert conn.send("a@example.org", "t1@example.com", MESSAGE) == "250 2.0.0 queued as T1"
    finally:
        conn.close()
        raw.close()
    assert not raw.errors


def test_an_address_needing_smtputf8_fails_where_it_is_not_offered():
    def script(conn, lines):
        assert [lines.readline() for _ in range(3)] == envelope_for(b"ok@example.com")
        conn.sendall(b"250 ok\r\n250 ok\r\n354 go on\r\n")
        read_data(lines)
        conn.sendall(b"250 2.0.0 queued\r\n")
        assert lines.readline().upper() == b"QUIT\r\n"
        conn.sendall(b"221 bye\r\n")

    raw = ScriptedServer(script)
    conn = SmtpConnection(raw.server())
    try:
        results = conn.send_many(MAIL_FROM, [("zoë@example.com", MESSAGE), ("ok@example.com", MESSAGE)])
    finally:
        conn.close()
        raw.close()
    assert not raw.errors and results[1] == "250 2.0.0 queued"
    assert is_outcome(results[0], permanent=True) and "needs SMTPUTF8" in results[0].reply
