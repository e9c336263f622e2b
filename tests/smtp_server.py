"""A real SMTP server for tests (aiosmtpd), which a test can program per recipient.

`server.behaviour = fn` where fn(rcpt, attempt) returns None to accept, a reply string such
as "451 4.7.1 try later" or "550 5.1.1 no such user" to answer DATA with, or "drop" to close
the connection in the middle of DATA. `attempt` counts the DATA commands seen for that address.
"""
import threading
from collections import Counter
from email import policy
from email.parser import BytesParser

from aiosmtpd.controller import Controller


class _Handler:
    def __init__(self, server):
        self.server = server

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
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.lock = threading.Lock()
        self.behaviour = None
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.attempts: Counter = Counter()
        self.controller = None

    def start(self):
        self.controller = Controller(_Handler(self), hostname=self.host, port=self.port,
                                     data_size_limit=60 * 1024 * 1024, decode_data=False,
                                     timeout=30)
        self.controller.start()

    def stop(self):
        if self.controller:
            self.controller.stop()
            self.controller = None

    def reset(self):
        with self.lock:
            self.messages.clear()
            self.attempts.clear()
            self.behaviour = None

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

