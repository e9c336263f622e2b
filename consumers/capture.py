"""The local capture SMTP server: the default outbound server of `scripts/run`.

It accepts every message and stores it in PostgreSQL so the UI's inbox can show what was
sent. Not for tests of faults: those use their own programmable aiosmtpd server.
"""
import asyncio
import logging
import os
from email.parser import BytesHeaderParser
from email.policy import default

from aiosmtpd.controller import Controller
from psycopg_pool import AsyncConnectionPool

from app.config import Config
from app.db import q

log = logging.getLogger("capture")


class CaptureHandler:
    def __init__(self, pool: AsyncConnectionPool):
        self.pool = pool

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        headers = BytesHeaderParser(policy=default).parsebytes(raw)
        async with self.pool.connection() as conn:
            await conn.execute(q.capture_insert, {
                "mail_from": envelope.mail_from or "", "rcpt_to": list(envelope.rcpt_tos),
                "subject": str(headers.get("Subject", ""))[:1000],
                "message_id": str(headers.get("Message-ID", ""))[:500] or None, "raw": raw})
        return "250 2.0.0 Ok: captured"


async def main(host: str, port: int):
    pool = AsyncConnectionPool(Config.DATABASE_URL, min_size=1, max_size=4, open=False)
    await pool.open()
    controller = Controller(CaptureHandler(pool), hostname=host, port=port,
                            data_size_limit=50 * 1024 * 1024, decode_data=False)
    controller.start()
    log.warning("capture SMTP server listening on %s:%s", host, port)
    try:
        await asyncio.Event().wait()
    finally:
        controller.stop()
        await pool.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(os.environ.get("CAPTURE_HOST", "127.0.0.1"), int(os.environ.get("CAPTURE_PORT", "2525"))))
