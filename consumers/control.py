"""Console control: ops pause, resume or stop a campaign by publishing to `campaign.control`.

From the RabbitMQ management console (Exchanges -> campaign.control -> Publish message),
any routing key, payload `{"campaign": 12, "action": "pause"}` (or "resume", "stop").
The command goes through `app.services.campaign.control`, the very path of the UI's
buttons, journaled with source `console`.

A body that is not a command (over CONTROL_MAX_BODY bytes, not UTF-8, not JSON, not an
object, no such campaign, unknown action) is journaled as `control.rejected` with the
reason and rejected; a command the campaign's state does not allow is journaled by the
service as `control.refused` and rejected too. Nothing a publisher sends can stop this
consumer; when PostgreSQL is away the command is put back and tried again.
"""
import asyncio
import json
import logging

import aio_pika
import psycopg
from aio_pika.abc import AbstractIncomingMessage

from app.config import Config
from app.db import pool
from app.services import campaign as campaigns
from app.services import journal
from app.services.campaign import CampaignError, NoSuchCampaign
from app.services.journal import Event
from .aio import run_forever

log = logging.getLogger("control")
QUEUE = "campaign.control"
RETRY_PAUSE = 2.0


class Rejected(ValueError):
    def __init__(self, reason: str, campaign_id: int | None = None):
        super().__init__(reason)
        self.campaign_id = campaign_id


def parse(body: bytes) -> tuple[int, str]:
    """(campaign id, action) from a message body, or Rejected with the reason."""
    if len(body) > Config.CONTROL_MAX_BODY:
        raise Rejected(f"body of {len(body)} bytes is over the limit of {Config.CONTROL_MAX_BODY}")
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise Rejected("body is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise Rejected(f"body is not JSON ({str(exc)[:100]})") from None
    if not isinstance(data, dict):
        raise Rejected('body must be a JSON object like {"campaign": 12, "action": "pause"}')
    campaign = data.get("campaign")
    if isinstance(campaign, str) and campaign.strip().isdigit():
        campaign = int(campaign.strip())
    if not isinstance(campaign, int) or isinstance(campaign, bool) or not 0 < campaign < 2**63:
        raise Rejected('"campaign" must be a campaign number')
    action = data.get("action")
    if not isinstance(action, str) or action.strip().lower() not in campaigns.ACTIONS:
        raise Rejected(f'"action" must be one of {", ".join(campaigns.ACTIONS)}', campaign)
    return campaign, action.strip().lower()


def apply(body: bytes, meta: dict) -> str:
    """Parse and apply one message; returns "ack" or "reject". Runs in a thread (psycopg)."""
    try:
        campaign_id, action = parse(body)
        try:
            result = campaigns.control(campaign_id, action, source="console", detail={"console": meta})
        except NoSuchCampaign as exc:
            raise Rejected(str(exc)) from None
        except CampaignError:
            return "reject"  # the service journaled the refusal as control.refused
        log.info("campaign %s: %s from the console -> %s", campaign_id, action, result["status"])
        return "ack"
    except Rejected as exc:
        preview = body[:200].decode("utf-8", "backslashreplace").replace("\x00", "\\x00")  # no NUL in jsonb
        with pool().connection() as conn:
            journal.append(conn, [Event("control.rejected", exc.campaign_id, source="console", detail={
                "reason": str(exc), "size": len(body), "body": preview, "console": meta})])
        log.warning("control message rejected: %s", exc)
        return "reject"


async def handle(message: AbstractIncomingMessage) -> None:
    meta = {"routing_key": message.routing_key, "user_id": message.user_id, "app_id": message.app_id}
    try:
        verdict = await asyncio.to_thread(apply, message.body, meta)
    except psycopg.OperationalError as exc:
        log.warning("database unavailable (%s): the command waits and is tried again", exc)
        await asyncio.sleep(RETRY_PAUSE)
        await message.nack(requeue=True)
        return
    except Exception:  # a bug must not take console control down with it
        log.exception("control message could not be handled; rejected")
        await message.reject(requeue=False)
        return
    if verdict == "ack":
        await message.ack()
    else:
        await message.reject(requeue=False)


async def consume() -> None:
    connection = await aio_pika.connect_robust(Config.AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1)  # one command at a time, in order
        queue = await channel.declare_queue(QUEUE, passive=True)
        await queue.consume(handle)
        log.warning("console control: consuming %s", QUEUE)
        await asyncio.Future()


if __name__ == "__main__":
    run_forever(consume)
