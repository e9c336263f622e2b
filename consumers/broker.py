"""The one Dramatiq broker every actor module imports.

Publisher confirms are on: a Send that returned has its work in RabbitMQ, not in a socket
buffer. Prefetch is kept small so a purge of a queue leaves little already in a worker's
hands (see README, "Operations"): each worker process holds at most QUEUE_PREFETCH messages
of each queue, where Dramatiq's own default would be twice its thread count.

Messages are encoded with orjson (consumers/encoding.py). Every process that publishes or
consumes (workers, the web app, the scheduler, the dead-letter keeper) imports this module
before it touches a message, so they all use the same encoder.
"""
import os

import dramatiq
import dramatiq.worker
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import CurrentMessage

from app.config import Config, env_int

from .encoding import OrjsonEncoder

dramatiq.set_encoder(OrjsonEncoder())
QUEUE_PREFETCH = env_int("dramatiq_queue_prefetch", 8)
dramatiq.worker.QUEUE_PREFETCH = QUEUE_PREFETCH  # read when a Worker is built, after this import

if os.environ.get("DRAMATIQ_STUB") == "1":  # pure unit tests only
    from dramatiq.brokers.stub import StubBroker

    broker = StubBroker()
else:
    from .heartbeat import Activity, Heartbeat
    from .messages import ValidateMessages

    broker = RabbitmqBroker(url=Config.AMQP_URL, confirm_delivery=True)
    broker.add_middleware(ValidateMessages())
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(Heartbeat())
    broker.add_middleware(Activity())
dramatiq.set_broker(broker)
