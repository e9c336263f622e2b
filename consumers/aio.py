"""What the two aio-pika consumers (console control, dead-letter keeper) share."""
import asyncio
import logging

import aio_pika

log = logging.getLogger(__name__)


def run_forever(consume) -> None:
    """Run `consume()` for good. Once connected, aio-pika reconnects by itself; until then
    (RabbitMQ not up yet, the definitions not loaded) keep trying rather than exit."""
    logging.basicConfig(level=logging.INFO)

    async def main():
        while True:
            try:
                await consume()
            except (aio_pika.exceptions.AMQPException, OSError) as exc:
                log.warning("RabbitMQ not available (%r); trying again in 5 s", exc)
                await asyncio.sleep(5)

    asyncio.run(main())
