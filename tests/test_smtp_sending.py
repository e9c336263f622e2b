"""Sending well, against real aiosmtpd servers: connection reuse, a cap on connections and a
messages-per-second limit per server, PIPELINING when offered (and correct without it),
STARTTLS with login, replies classified at every step, and failover to the next server when
one keeps failing, journaled, through the real workers."""
import os
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
