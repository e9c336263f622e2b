"""A real SMTP server for tests (aiosmtpd), which a test can program per recipient.

`server.behaviour = fn` where fn(rcpt, attempt) returns None to accept, a reply string such
as "451 4.7.1 try later" or "550 5.1.1 no such user" to answer DATA with, or "drop" to close
the connection in the middle of DATA. `attempt` counts the DATA commands seen for that address.

`server.rcpt_behaviour = fn(rcpt)` may refuse at RCPT TO with a reply instead.
`server.pipelining` (on by default) advertises PIPELINING; `server.refuse_for(20)` closes
the listening socket for 20 seconds (connections refused), then listens again.
"""
import threading
import time
from collections import Counter
from email import policy
from email.parser import BytesParser

from aiosmtpd.controller import Controller


class _Handler:
    def __init__(self, server):
        self.server = server

    async def handle_EHLO(self, smtp, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.server.lock:
            self.server.sessions += 1
        if self.server.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):
        verdict = self.server.rcpt_behaviour(address.lower()) if self.server.rcpt_behaviour else None
        if verdict:
            return verdict
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp, session, envelope):
        s = self.server
        rcpt = envelope.rcpt_tos[0].lower()
        with s.lock:
            s.attempts[rcpt] += 1
            attempt = s.attempts[rcpt]
        verdict = s.behaviour(rcpt, attempt) if s.behaviour else None
        if verdict == "drop":
            smtp.transport.close()
            return "421 closing"
        if verdict:
            return verdict
        raw = envelope.original_content or envelope.content
        with s.lock:
            s.messages.append((envelope.mail_from, list(envelope.rcpt_tos), raw))
        return "250 2.0.0 Ok: queued"


class SmtpServer:
    def __init__(self, host: str, port: int, **smtp_options):
        """`smtp_options` go to aiosmtpd's SMTP (tls_context, authenticator, ...)."""
        self.host, self.port = host, port
        self.smtp_options = smtp_options
        self.lock = threading.Lock()
        self.behaviour = None
        self.rcpt_behaviour = None
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.attempts: Counter = Counter()
        self.sessions = 0
        self.pipelining = True
        self.controller = None
        self._restart: threading.Timer | None = None

    def start(self):
        self.controller = Controller(_Handler(self), hostname=self.host, port=self.port,
                                     data_size_limit=60 * 1024 * 1024, decode_data=False,
                                     timeout=30, **self.smtp_options)
        self.controller.start()

    def stop(self):
        if self._restart:
            self._restart.cancel()
            self._restart = None
        if self.controller:
            self.controller.stop()
            self.controller = None

    def refuse_for(self, seconds: float) -> float:
        """Stop listening now and listen again after `seconds`; returns when it will be up."""
        self.stop()
        self._restart = threading.Timer(seconds, self.start)
        self._restart.daemon = True
        self._restart.start()
        return time.monotonic() + seconds

    def is_up(self) -> bool:
        return self.controller is not None

    def reset(self):
        with self.lock:
            self.messages.clear()
            self.attempts.clear()
            self.behaviour = None
            self.rcpt_behaviour = None
            self.sessions = 0
            self.pipelining = True
        if not self.is_up():
            self.stop()
            self.start()

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def parsed(self):
        with self.lock:
            raws = [m[2] for m in self.messages]
        return [BytesParser(policy=policy.default).parsebytes(r) for r in raws]

    def recipients(self) -> list[str]:
        with self.lock:
            return [r.lower() for m in self.messages for r in m[1]]

