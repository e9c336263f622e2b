"""SMTP delivery over reused connections, with replies classified as the design needs them.

A 2xx is sent, a 5xx is permanent (never retried), everything else (4xx, refused, timeout,
dropped mid-DATA) is temporary and goes back for a retry with backoff.

Per server and per process (`SmtpPool`): a cap on open connections, a messages-per-second
limit, idle connections reused, and a circuit that takes a server out of use for a while
when it keeps failing at the connection level, so that work moves to the next server
(failover). PIPELINING, when the server offers it, sends each message's data together with
the next message's MAIL, RCPT and DATA in one write (`Sender.send_many`).
"""
import re
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    tls: str  # "none", "starttls" or "ssl"
    username: str | None
    password: str | None
    timeout: float
    max_connections: int = 4
    rate: float = 0.0  # messages per second per worker process; 0 = no limit
    verify: bool = True
    cafile: str | None = None

    @classmethod
    def from_url(cls, url: str) -> "SmtpServer":
        """smtp://[user:pass@]host[:port][?starttls=1&timeout=10&max_connections=4&rate=50
        &verify=1&cafile=/path] or smtps://..."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"an SMTP URL must look like smtp://host:port, not {url!r}")
        query = parse_qs(parts.query)

        def opt(name, default):
            return query.get(name, [default])[0]

        tls = "ssl" if parts.scheme == "smtps" else ("starttls" if opt("starttls", "0") in _TRUE else "none")
        try:
            server = cls(
                host=parts.hostname,
                port=parts.port or (465 if tls == "ssl" else 25),
                tls=tls,
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
                timeout=float(opt("timeout", "30")),
                max_connections=int(opt("max_connections", "4")),
                rate=float(opt("rate", "0")),
                verify=opt("verify", "1") in _TRUE,
                cafile=opt("cafile", None),
            )
        except ValueError as exc:
            raise ValueError(f"bad option in SMTP URL {parts.hostname}:{parts.port}: {exc}") from None
        if server.max_connections < 1 or server.rate < 0 or server.timeout <= 0:
            raise ValueError(f"SMTP URL {server}: max_connections >= 1, rate >= 0 and timeout > 0")
        return server

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def __str__(self):
        return f"{self.host}:{self.port}"


def servers_from_urls(urls: str) -> list[SmtpServer]:
    """The configured servers in order of preference (SMTP_URLS is comma-separated)."""
    servers = [SmtpServer.from_url(u) for u in urls.split(",") if u.strip()]
    if not servers:
        raise ValueError("no SMTP server configured: set SMTP_URLS or SMTP_URL")
    return servers


def configured_servers() -> list[SmtpServer]:
    from .config import Config

    return servers_from_urls(Config.SMTP_URLS or Config.SMTP_URL)


class SendOutcome(Exception):
    """A failed attempt; `permanent` says whether a retry could ever help.

    `connection` marks a fault of the server or the link (refused, timeout, dropped, 421)
    rather than of this recipient: those count towards failing over to the next server.
    `deferred` means no attempt was made at all (every server is resting after failures).
    """

    def __init__(self, reply: str, permanent: bool, code: int | None = None,
                 connection: bool = False, deferred: bool = False, retry_after: float = 0.0):
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent
        self.code = code
        self.connection = connection
        self.deferred = deferred
        self.retry_after = retry_after


_EOL = re.compile(rb"\r\n|\n|\r")
_UNUSABLE = re.compile(r"[\r\n\x00<>]").search
# A plain address (no display name, comment, quoting or non-ASCII): smtplib.quoteaddr returns
# it in angle brackets unchanged, but spends ~9 µs in email.utils.parseaddr to find that out.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+\Z").match
_MAXLINE = 8192  # as smtplib: a longer reply line is no SMTP server's
_ENVELOPE = (("MAIL FROM", (250,)), ("RCPT TO", (250, 251)), ("DATA", (354,)))


def _reply(code: int, msg: bytes | str) -> str:
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return f"{code} {msg}".strip()


def _angle(address: str) -> str:
    return f"<{address}>" if _PLAIN_ADDRESS(address) else smtplib.quoteaddr(address)


def _data_bytes(message: bytes) -> bytes:
    """CRLF line ends, dot-stuffing and the terminating dot (RFC 5321 4.5.2).

    Messages from app.mime already end every line with CRLF: three counts prove it and
    spare the regex; after that a line start is always "\\r\\n", so stuffing is one replace."""
    lf = message.count(b"\n")
    if message.count(b"\r\n") != lf or message.count(b"\r") != lf:
        message = _EOL.sub(b"\r\n", message)
    data = message.replace(b"\r\n.", b"\r\n..")
    if data[:1] == b".":
        data = b"." + data
    if data[-2:] != b"\r\n":
        data += b"\r\n"
    return data + b".\r\n"


class _Lost(Exception):
    """The server closed the connection, or sent what no SMTP server would."""


class SmtpConnection:
    """One reused connection; reconnects lazily after a fault.

    smtplib opens the session (connect, EHLO, STARTTLS, login); transactions then run on the
    socket and smtplib's buffered reader directly. With PIPELINING, each message's data goes
    in one write with the next message's MAIL FROM, RCPT TO and DATA (RFC 2920: message
    content may open a group), and the four replies come back together: one round trip and
    one write per message. Without it, one command at a time.
    """

    def __init__(self, server: SmtpServer):
        self.server = server
        self._smtp: smtplib.SMTP | None = None
        self._fresh = False  # connected, and no transaction tried on it yet

    def _connect(self) -> smtplib.SMTP:
        s = self.server
        try:
            if s.tls == "ssl":
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=s.tls_context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo()
            if s.tls == "starttls":
                smtp.starttls(context=s.tls_context())
                smtp.ehlo()
            if s.username:
                smtp.login(s.username, s.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise SendOutcome(f"login refused by {s}: {_reply(exc.smtp_code, exc.smtp_error)}",
                              permanent=False, code=exc.smtp_code, connection=True) from None
        except smtplib.SMTPResponseException as exc:
            raise SendOutcome(f"{s} refused the session: {_reply(exc.smtp_code, exc.smtp_error)}",
                              permanent=False, code=exc.smtp_code, connection=True) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SendOutcome(f"cannot connect to {s}: {exc}", permanent=False, connection=True) from None
        return smtp

    def _open(self) -> None:
        smtp = self._connect()
        if smtp.file is None:
            smtp.file = smtp.sock.makefile("rb")
        # Replies are read from smtplib's own buffer, so QUIT through smtplib still works.
        self._readline = smtp.file.readline
        self._sendall = smtp.sock.sendall
        self._pipelining = smtp.has_extn("pipelining")
        self._smtputf8 = smtp.has_extn("smtputf8")
        self._smtp, self._fresh = smtp, True

    @property
    def pipelining(self) -> bool:
        return self._smtp is not None and self._smtp.has_extn("pipelining")

    def send(self, mail_from: str, rcpt: str, message: bytes) -> str:
        """Deliver one message; return the server's reply to the data or raise SendOutcome."""
        return _one(self.send_many(mail_from, [(rcpt, message)]))

    def send_many(self, mail_from: str, items: list[tuple[str, bytes]]) -> list[str | SendOutcome]:
        """Deliver (rcpt, message) items in order on this server, reconnecting as needed: a
        2xx reply string or a SendOutcome per item (see Sender.send_many)."""
        results: list = [None] * len(items)
        i = 0
        while i < len(items):
            i = self.run(mail_from, items, i, results)
        return results

    def _read_reply(self) -> tuple[int, bytes]:
        """One reply, possibly multi-line, as smtplib.getreply reads it."""
        lines = []
        while True:
            line = self._readline(_MAXLINE + 1)
            if not line:
                raise _Lost("connection unexpectedly closed")
            if len(line) > _MAXLINE:
                raise _Lost("reply line too long")
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                break
        try:
            code = int(line[:3])
        except ValueError:
            code = -1
        return code, b"\n".join(lines) if len(lines) > 1 else lines[0]

    def _unusable(self, mail_from: str, rcpt: str) -> SendOutcome | None:
        if _UNUSABLE(rcpt) or _UNUSABLE(mail_from):
            return SendOutcome(f"{rcpt!r}: not a usable address", permanent=True)
        if not (rcpt.isascii() and mail_from.isascii()) and not self._smtputf8:
            return SendOutcome(f"{rcpt}: the address needs SMTPUTF8, which {self.server} does not offer",
                               permanent=True)
        return None

    def run(self, mail_from: str, items: list[tuple[str, bytes]], i: int, results: list,
            pace=None) -> int:
        """Send items[i:] in order on this connection (connecting first if needed), storing
        each item's result in `results`. Returns len(items), or the index of the first item
        not begun when the connection ended (a 421, a drop, a timeout): the caller goes on
        with a fresh connection. `pace()` runs before each message's envelope is written.

        Nothing of a message can have been accepted before its data and final dot are sent,
        so only the message whose data reply is lost is in doubt ("dropped during DATA");
        a reused connection that dies before any reply to a message's envelope (or says 421
        to it) is stale, and the message is begun again on a fresh connection, once."""
        n = len(items)
        if self._smtp is None:
            try:
                self._open()
            except SendOutcome as outcome:
                results[i] = outcome
                return i + 1
        try:
            return self._run(mail_from, items, i, results, pace, n)
        except BaseException:
            # Anything else (an interrupt mid-write) leaves replies unread: never reuse it.
            self._abandon()
            raise

    def _run(self, mail_from, items, i, results, pace, n) -> int:
        pipelining, sendall, read_reply = self._pipelining, self._sendall, self._read_reply
        server = self.server
        mail_lines = {}  # the MAIL FROM command, plain or with SMTPUTF8
        prev = None  # the message whose DATA the server opened (354): its data goes next
        owed: list[bytes] = []  # after a refused envelope: end a DATA opened anyway, RSET
        while True:
            k, envelope = i, None
            while k < n:
                rcpt = items[k][0]
                problem = self._unusable(mail_from, rcpt)
                if problem is None:
                    utf8 = not (rcpt.isascii() and mail_from.isascii())
                    mail = mail_lines.get(utf8)
                    if mail is None:
                        mail = mail_lines[utf8] = (f"MAIL FROM:{_angle(mail_from)}"
                                                   f"{' SMTPUTF8' if utf8 else ''}\r\n").encode()
                    envelope = (mail, f"RCPT TO:{_angle(rcpt)}\r\n".encode(), b"DATA\r\n")
                    if pace is not None:
                        pace()
                    break
                results[k] = problem
                k += 1
            if prev is None and not owed and envelope is None:
                return n
            fresh, codes = self._fresh, []
            stage = "data" if prev is not None else "owed" if owed else "envelope"
            try:
                data = _data_bytes(items[prev][1]) if prev is not None else b""
                if pipelining:
                    sendall(b"".join((data, *owed, *(envelope or ()))))
                if prev is not None:
                    if not pipelining:
                        sendall(data)
                    code, msg = read_reply()
                    if code == 250:
                        results[prev] = _reply(code, msg)
                    else:
                        results[prev] = SendOutcome(f"DATA: {_reply(code, msg)}", permanent=code >= 500,
                                                    code=code, connection=code == 421)
                        if code == 421:
                            self._abandon()
                            return k
                    prev = None
                stage = "owed"
                for command in owed:
                    if not pipelining:
                        sendall(command)
                    code, _ = read_reply()
                    if code == 421 or (command == b"RSET\r\n" and code != 250):
                        self._abandon()  # a server that cannot reset is not one to go on with
                        return k
                owed = []
                if envelope is None:
                    return n
                stage = "envelope"
                for command, (_, ok) in zip(envelope, _ENVELOPE):
                    if not pipelining:
                        if codes and codes[-1][0] not in last_ok:
                            break
                        sendall(command)
                    codes.append(read_reply())
                    last_ok = ok
                    if codes[-1][0] == 421:
                        break  # the server is closing: no more replies will come
            except (OSError, _Lost) as exc:
                self._abandon()
                if stage == "data":
                    results[prev] = SendOutcome(f"connection to {server} dropped during DATA: {exc}",
                                                permanent=False, connection=True)
                    return k
                if stage == "owed" or (not codes and not fresh):
                    return k
                results[k] = SendOutcome(f"connection to {server} lost before DATA: {exc}",
                                         permanent=False, connection=True)
                return k + 1
            self._fresh = False
            for (code, msg), (name, ok) in zip(codes, _ENVELOPE):
                if code not in ok:
                    if code == 421 and not fresh and len(codes) == 1:
                        self._abandon()  # a reused connection the server timed out: stale
                        return k
                    results[k] = SendOutcome(f"{name}: {_reply(code, msg)}", permanent=code >= 500,
                                             code=code, connection=code == 421)
                    if any(c == 421 for c, _ in codes):
                        self._abandon()
                        return k + 1
                    owed = [b".\r\n", b"RSET\r\n"] if codes[-1][0] == 354 else [b"RSET\r\n"]
                    break
            else:
                prev = k
            i = k + 1

    def _abandon(self) -> None:
        """Close at once, without QUIT: the connection is broken or its replies are out of step."""
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    def close(self):
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                self._smtp.close()
            self._smtp = None


def _one(results: list) -> str:
    if isinstance(results[0], SendOutcome):
        raise results[0]
    return results[0]


class RateLimiter:
    """Spaces messages at `rate` per second (no burst), shared by the threads of a process."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            time.sleep(at - now)


class _ServerState:
    """One server as seen by this process: connection slots, idle connections, the circuit."""

    def __init__(self, server: SmtpServer):
        self.server = server
        self.slots = threading.BoundedSemaphore(server.max_connections)
        self.idle: list[SmtpConnection] = []
        self.limiter = RateLimiter(server.rate)
        self.failures = 0
        self.down_until = 0.0


class SmtpPool:
    """The configured servers of one process, in order of preference.

    A server whose connection-level failures reach `failover_after` in a row rests for
    `cooldown` seconds; meanwhile work goes to the next server. After the rest it gets one
    try: a success closes the circuit, a failure opens it again at once.
    """

    def __init__(self, servers: list[SmtpServer], failover_after: int = 3, cooldown: float = 10.0):
        self.states = [_ServerState(s) for s in servers]
        self.failover_after = failover_after
        self.cooldown = cooldown
        self._lock = threading.Lock()
        self._events: list[tuple[str, dict]] = []

    def sender(self) -> "Sender":
        return Sender(self)

    def pick(self) -> _ServerState:
        now = time.monotonic()
        for state in self.states:
            if state.down_until <= now:
                return state
        soonest = min(s.down_until for s in self.states)
        raise SendOutcome("every SMTP server is failing; trying again shortly", permanent=False,
                          connection=True, deferred=True, retry_after=soonest - now)

    def report(self, state: _ServerState, outcome: SendOutcome | None) -> None:
        # The common cases change nothing and take no lock: a success on a server with no
        # failures counted, and a refusal that is the recipient's, not the server's.
        if outcome is None:
            if not state.failures:
                return
        elif not outcome.connection:
            return
        with self._lock:
            if outcome is None:
                if state.failures >= self.failover_after:
                    self._events.append(("smtp.server_up", {"server": str(state.server)}))
                state.failures = 0
                return
            if not outcome.connection:
                return
            state.failures += 1
            if state.failures < self.failover_after:
                return
            state.down_until = time.monotonic() + self.cooldown
            index = self.states.index(state)
            others = [str(s.server) for s in self.states[index + 1:] + self.states[:index]
                      if s.down_until <= time.monotonic()]
            self._events.append(("smtp.failover", {
                "server": str(state.server), "to": others[0] if others else None,
                "failures": state.failures, "reason": outcome.reply, "rest_seconds": self.cooldown}))

    def drain_events(self) -> list[tuple[str, dict]]:
        with self._lock:
            events, self._events = self._events, []
        return events


class Sender:
    """A thread's handle on the pool for one batch: holds at most one connection slot,
    moving to another server when the circuit says so."""

    def __init__(self, pool: SmtpPool):
        self.pool = pool
        self.state: _ServerState | None = None
        self.conn: SmtpConnection | None = None

    def send(self, mail_from: str, rcpt: str, message: bytes) -> str:
        """One message: the server's 2xx reply, or SendOutcome raised."""
        return _one(self.send_many(mail_from, [(rcpt, message)]))

    def send_many(self, mail_from: str, items: list[tuple[str, bytes]]) -> list[str | SendOutcome]:
        """Send (rcpt, message) items in order over this thread's connection and return one
        result per item, in order: the server's 2xx reply string, or a SendOutcome (returned,
        not raised). A refusal of one message is its own outcome and the connection goes on;
        when the connection ends (421, drop, timeout), the messages not begun yet go on over
        a fresh one, on the server pool.pick() says: failover as for single sends. Messages
        meeting every server at rest get a `deferred` outcome each. Not thread-safe: one
        Sender per thread."""
        results: list = [None] * len(items)
        pool, n, i = self.pool, len(items), 0
        while i < n:
            try:
                state = pool.pick()
            except SendOutcome as outcome:  # every server rests: no attempt made
                results[i] = outcome
                i += 1
                continue
            if state is not self.state:
                self.release()
                state.slots.acquire()
                self.state = state
                with pool._lock:
                    self.conn = state.idle.pop() if state.idle else SmtpConnection(state.server)
            start = i
            i = self.conn.run(mail_from, items, i, results, state.limiter.wait if state.limiter.interval else None)
            for result in results[start:i]:
                pool.report(state, None if result.__class__ is str else result)
        return results

    def release(self) -> None:
        """Give the connection back for reuse (or close it when it is broken)."""
        if self.state is None:
            return
        if self.conn is not None and self.conn._smtp is not None:
            with self.pool._lock:
                self.state.idle.append(self.conn)
        self.state.slots.release()
        self.state, self.conn = None, None


def send_once(servers: list[SmtpServer], mail_from: str, rcpt: str, message: bytes) -> str:
    """One message outside the queues (a test send), trying the servers in order while the
    failure is the server's rather than the recipient's."""
    last = None
    for server in servers:
        conn = SmtpConnection(server)
        try:
            return conn.send(mail_from, rcpt, message)
        except SendOutcome as outcome:
            if not outcome.connection:
                raise
            last = outcome
        finally:
            conn.close()
    raise last
