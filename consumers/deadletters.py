"""The dead-letter keeper: moves what lands in a `*.XQ` queue into PostgreSQL with its reason.

Messages reach an XQ three ways: Dramatiq dead-letters one no worker can use (not JSON, an
unknown actor, arguments that do not fit: see consumers/messages.py) or whose retries ran
out; and dispatch copies each email whose last retry failed there. The UI lists, replays and
discards dead letters from the `dead_letters` table, so this consumer records each message
(keyed: a redelivery records nothing twice) and acknowledges it only after the commit.
"""
import asyncio
import functools
import hashlib
import json
import logging

import aio_pika
import psycopg
from aio_pika.abc import AbstractIncomingMessage
from dramatiq import Message
from dramatiq.errors import DecodeError
from psycopg.types.json import Jsonb

from app.config import Config
from app.db import pool, q
from app.services import journal
from app.services.journal import Event

from .aio import run_forever
from .messages import problem
from .worker import broker

log = logging.getLogger("deadletters")
QUEUES = ("enqueue.XQ", "prepare.XQ", "dispatch.XQ", "urgent.XQ")
MAX_RAW = 64 * 1024
RETRY_PAUSE = 2.0


def _decode_problem(body: bytes, exc: DecodeError) -> str:
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return "not a Dramatiq message: the body is not UTF-8 text"
    except (ValueError, RecursionError) as err:
        return f"not JSON: {str(err)[:200]}"
    if not isinstance(data, dict):
        return "not a Dramatiq message: the JSON is not an object"
    cause = exc.__cause__ or exc
    return f"not a Dramatiq message (missing or unexpected fields: {str(cause)[:200]})"


def describe(queue_name: str, body: bytes, headers: dict) -> dict:
    """The dead_letters row for one message: its reason, and what it belongs to."""
    deaths = headers.get("x-death") or [{}]
    death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
    seen = f"{death.get('count', 0)}.{death.get('time', '')}"
    row = {"queue": queue_name.removesuffix(".XQ"), "campaign_id": None, "delivery_id": None, "email": None,
           "actor": None, "message": None, "raw": None}
    try:
        message = Message.decode(body)
    except DecodeError as exc:
        return {**row, "key": f"{queue_name}:{hashlib.sha256(body).hexdigest()[:32]}:{seen}",
                "reason": _decode_problem(body, exc), "raw": body[:MAX_RAW]}
    row["actor"] = str(message.actor_name)[:200]
    args = message.args
    if args and isinstance(args[0], int) and not isinstance(args[0], bool) and 0 < args[0] < 2**63:
        row["campaign_id"] = args[0]
    key = f"{queue_name}:{str(message.message_id)[:100]}:{seen}"
    options = message.options if isinstance(message.options, dict) else {}
    if message.actor_name not in broker.actors:
        return {**row, "key": key, "reason": f"unknown actor {row['actor']!r}", "raw": body[:MAX_RAW]}
    try:
        reason = problem(broker.get_actor(message.actor_name), args, message.kwargs)
    except Exception as exc:  # the same judgement the worker made (consumers/messages.py)
        reason = f"bad arguments for {row['actor']}: {exc!r:.200}"
    if reason:
        return {**row, "key": key, "reason": reason, "raw": body[:MAX_RAW]}
    if options.get("dead_key"):  # an email whose last retry failed, copied here by dispatch
        email = args[1][0]
        return {**row, "key": str(options["dead_key"]), "reason": str(options.get("dead_reason", ""))[:2000],
                "delivery_id": email["d"], "email": email["to"], "message": message.asdict()}
    retries = options.get("retries", 0)
    last_error = (options.get("traceback") or "").strip().splitlines()[-1:] or ["no error recorded"]
    why = death.get("reason", "rejected")
    reason = (f"gave up after {retries} retries: {last_error[0][:500]}" if retries
              else f"dead-lettered by RabbitMQ ({why})")
    return {**row, "key": key, "reason": reason, "message": message.asdict()}


def _text(value):
    """PostgreSQL text and jsonb cannot hold a NUL character; anything from a publisher might."""
    return value.replace("\x00", "\\x00") if isinstance(value, str) else value


def record(queue_name: str, body: bytes, headers: dict) -> bool:
    """Store one dead letter (once); returns whether it was new."""
    try:
        d = describe(queue_name, body, headers)
    except Exception as exc:  # whatever a publisher sent, the letter is kept, raw
        d = {"queue": queue_name.removesuffix(".XQ"), "campaign_id": None, "delivery_id": None, "email": None,
             "actor": None, "message": None, "raw": body[:MAX_RAW], "reason": f"unreadable message ({exc!r:.200})",
             "key": f"{queue_name}:{hashlib.sha256(body).hexdigest()[:32]}:{len(body)}"}
    d = {k: _text(v) for k, v in d.items()}
    if d["message"] is not None and "\\u0000" in json.dumps(d["message"]):
        d["message"], d["raw"] = None, body[:MAX_RAW]
    with pool().connection() as conn:
        new = conn.execute(q.dead_letter_insert, {
            "keys": [d["key"]], "queue_name": d["queue"], "campaign_ids": [d["campaign_id"]],
            "delivery_ids": [d["delivery_id"]], "emails": [d["email"]], "actor_names": [d["actor"]],
            "reasons": [d["reason"]], "messages": [Jsonb(d["message"]) if d["message"] else None],
            "raws": [d["raw"]]}).fetchall()
        if new:
            journal.append(conn, [Event("deadletter.received", d["campaign_id"], d["delivery_id"], d["email"],
                                        source="broker", key=f"dlq.{d['key']}",
                                        detail={"queue": queue_name, "reason": d["reason"],
                                                "dead_letter": new[0]["id"]})])
    return bool(new)


async def handle(queue_name: str, message: AbstractIncomingMessage) -> None:
    try:
        await asyncio.to_thread(record, queue_name, message.body, dict(message.headers or {}))
    except psycopg.OperationalError as exc:
        log.warning("database unavailable (%s): the dead letter stays in %s", exc, queue_name)
        await asyncio.sleep(RETRY_PAUSE)
        await message.nack(requeue=True)
        return
    except Exception:  # never lose one: leave it in the queue and say so loudly
        log.exception("dead letter from %s could not be recorded; left in the queue", queue_name)
        await asyncio.sleep(RETRY_PAUSE)
        await message.nack(requeue=True)
        return
    await message.ack()


async def consume() -> None:
    connection = await aio_pika.connect_robust(Config.AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=20)
        for name in QUEUES:
            queue = await channel.declare_queue(name, passive=True)
            await queue.consume(functools.partial(handle, name))
        log.warning("dead-letter keeper: consuming %s", ", ".join(QUEUES))
        await asyncio.Future()


if __name__ == "__main__":
    run_forever(consume)
