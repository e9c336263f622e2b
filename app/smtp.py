"""SMTP delivery over reused connections, with replies classified as the design needs them.

A 2xx is sent, a 5xx is permanent (never retried), everything else (4xx, refused, timeout,
dropped mid-DATA) is temporary and goes back for a retry with backoff.

Per server and per process (`SmtpPool`): a cap on open connections, a messages-per-second
limit, idle connections reused, and a circuit that takes a server out of use for a while
when it keeps failing at the connection level, so that work moves to the next server
(failover). PIPELINING, when the server offers it, sends MAIL, RCPT and DATA in one write.
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


def _reply(code: int, msg: bytes | str) -> str:
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return f"{code} {msg}".strip()


def _data_bytes(message: bytes) -> bytes:
    """CRLF line ends, dot-stuffing and the terminating dot (RFC 5321 4.5.2)."""
    data = re.sub(rb"\r\n|\n|\r", b"\r\n", message)
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class _Stale(Exception):
    """The server closed a reused connection before the transaction began: nothing was
    accepted, so sending again on a fresh connection is safe."""


class SmtpConnection:
    """One reused connection; reconnects lazily after a fault."""

    def __init__(self, server: SmtpServer):
        self.server = server
        self._smtp: smtplib.SMTP | None = None

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

    @property
    def pipelining(self) -> bool:
        return self._smtp is not None and self._smtp.has_extn("pipelining")

    def send(self, mail_from: str, rcpt: str, message: bytes) -> str:
        """Deliver one message; return the server's reply to the data or raise SendOutcome."""
        fresh = self._smtp is None
        if fresh:
            self._smtp = self._connect()
        try:
            return self._transaction(mail_from, rcpt, message, fresh)
        except _Stale:
            self.close()
            self._smtp = self._connect()
            return self._transaction(mail_from, rcpt, message, True)

    def _transaction(self, mail_from: str, rcpt: str, message: bytes, fresh: bool) -> str:
        smtp = self._smtp
        if any(c in addr for addr in (mail_from, rcpt) for c in "\r\n\x00<>"):
            raise SendOutcome(f"{rcpt!r}: not a usable address", permanent=True)
        utf8 = not (mail_from.isascii() and rcpt.isascii())
        if utf8 and not smtp.has_extn("smtputf8"):
            raise SendOutcome(f"{rcpt}: the address needs SMTPUTF8, which {self.server} does not offer",
                              permanent=True)
        commands = [f"MAIL FROM:{smtplib.quoteaddr(mail_from)}{' SMTPUTF8' if utf8 else ''}\r\n",
                    f"RCPT TO:{smtplib.quoteaddr(rcpt)}\r\n", "DATA\r\n"]
        encoding = "utf-8" if utf8 else "ascii"
        replies = []
        try:
            if smtp.has_extn("pipelining"):
                smtp.send("".join(commands).encode(encoding))
                replies = [smtp.getreply() for _ in commands]
            else:
                for command in commands:
                    smtp.send(command.encode(encoding))
                    replies.append(smtp.getreply())
                    if replies[-1][0] not in (250, 251, 354):
                        break
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self.close()
            if not fresh and not replies:
                raise _Stale() from None
            raise SendOutcome(f"connection to {self.server} lost before DATA: {exc}",
                              permanent=False, connection=True) from None
        names = ("MAIL FROM", "RCPT TO", "DATA")
        for (code, msg), name, ok in zip(replies, names, ((250,), (250, 251), (354,))):
            if code not in ok:
                self._abort(data_started=replies[-1][0] == 354)
                raise SendOutcome(f"{name}: {_reply(code, msg)}", permanent=code >= 500, code=code,
                                  connection=code == 421)
        try:
            smtp.send(_data_bytes(message))
            code, msg = smtp.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self.close()
            raise SendOutcome(f"connection to {self.server} dropped during DATA: {exc}",
                              permanent=False, connection=True) from None
        if code != 250:
            if code == 421:
                self.close()
            raise SendOutcome(f"DATA: {_reply(code, msg)}", permanent=code >= 500, code=code,
                              connection=code == 421)
        return _reply(code, msg)

    def _abort(self, data_started: bool):
        """After a refused envelope: end a DATA the server opened anyway, then RSET."""
        try:
            if data_started:
                self._smtp.send(b".\r\n")
                self._smtp.getreply()
            code, _ = self._smtp.rset()
            if code == 421:
                self.close()
        except (OSError, smtplib.SMTPException):
            self.close()

    def close(self):
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                self._smtp.close()
            self._smtp = None


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
        state = self.pool.pick()
        if state is not self.state:
            self.release()
            state.slots.acquire()
            self.state = state
            with self.pool._lock:
                self.conn = state.idle.pop() if state.idle else SmtpConnection(state.server)
        state.limiter.wait()
        try:
            reply = self.conn.send(mail_from, rcpt, message)
        except SendOutcome as outcome:
            self.pool.report(state, outcome)
            raise
        self.pool.report(state, None)
        return reply

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
