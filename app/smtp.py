"""SMTP delivery over reused connections, with replies classified as the design needs them.

A 2xx is sent, a 5xx is permanent (never retried), everything else (4xx, refused, timeout,
dropped mid-DATA) is temporary and goes back for a retry with backoff.
"""
import smtplib
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    tls: str  # "none", "starttls" or "ssl"
    username: str | None
    password: str | None
    timeout: float

    @classmethod
    def from_url(cls, url: str) -> "SmtpServer":
        """smtp://[user:pass@]host[:port][?starttls=1&timeout=10] or smtps://..."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"SMTP_URL must look like smtp://host:port, not {url!r}")
        query = parse_qs(parts.query)
        tls = "ssl" if parts.scheme == "smtps" else (
            "starttls" if query.get("starttls", ["0"])[0] in ("1", "true", "yes") else "none")
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if tls == "ssl" else 25),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout=float(query.get("timeout", ["30"])[0]),
        )

    def __str__(self):
        return f"{self.host}:{self.port}"


class SendOutcome(Exception):
    """A failed attempt; `permanent` says whether a retry could ever help."""

    def __init__(self, reply: str, permanent: bool, code: int | None = None):
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent
        self.code = code


def _reply(code: int, msg: bytes | str) -> str:
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return f"{code} {msg}".strip()


class SmtpConnection:
    """One reused connection; reconnects lazily after a fault."""

    def __init__(self, server: SmtpServer):
        self.server = server
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.server
        try:
            if s.tls == "ssl":
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout,
                                        context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo()
            if s.tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if s.username:
                smtp.login(s.username, s.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise SendOutcome(f"login refused by {s}: {_reply(exc.smtp_code, exc.smtp_error)}",
                              permanent=False, code=exc.smtp_code) from None
        except smtplib.SMTPResponseException as exc:
            raise SendOutcome(f"{s} refused the session: {_reply(exc.smtp_code, exc.smtp_error)}",
                              permanent=False, code=exc.smtp_code) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SendOutcome(f"cannot connect to {s}: {exc}", permanent=False) from None
        return smtp

    def send(self, mail_from: str, rcpt: str, message: bytes) -> str:
        """Deliver one message; return the server's reply to DATA or raise SendOutcome."""
        fresh = self._smtp is None
        if fresh:
            self._smtp = self._connect()
        try:
            return self._transaction(mail_from, rcpt, message)
        except smtplib.SMTPServerDisconnected:
            self.close()
            if fresh:
                raise SendOutcome(f"{self.server} closed the connection", permanent=False) from None
            # A reused connection the server had already dropped: nothing was accepted yet.
            self._smtp = self._connect()
            try:
                return self._transaction(mail_from, rcpt, message)
            except smtplib.SMTPServerDisconnected as exc:
                self.close()
                raise SendOutcome(f"{self.server} dropped the connection: {exc}", permanent=False) from None
        except smtplib.SMTPResponseException as exc:
            self._rset()
            raise SendOutcome(_reply(exc.smtp_code, exc.smtp_error), permanent=exc.smtp_code >= 500,
                              code=exc.smtp_code) from None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise SendOutcome(f"connection to {self.server} failed: {exc}", permanent=False) from None

    def _transaction(self, mail_from: str, rcpt: str, message: bytes) -> str:
        smtp = self._smtp
        code, msg = smtp.mail(mail_from)
        if code != 250:
            self._rset()
            raise SendOutcome(f"MAIL FROM: {_reply(code, msg)}", permanent=code >= 500, code=code)
        code, msg = smtp.rcpt(rcpt)
        if code not in (250, 251):
            self._rset()
            raise SendOutcome(f"RCPT TO: {_reply(code, msg)}", permanent=code >= 500, code=code)
        code, msg = smtp.data(message)
        if code != 250:
            raise SendOutcome(f"DATA: {_reply(code, msg)}", permanent=code >= 500, code=code)
        return _reply(code, msg)

    def _rset(self):
        try:
            self._smtp.rset()
        except (OSError, smtplib.SMTPException):
            self.close()

    def close(self):
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                self._smtp.close()
            self._smtp = None
