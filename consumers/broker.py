"""The one Dramatiq broker every actor module imports.

Publisher confirms are on: a Send that returned has its work in RabbitMQ, not in a socket
buffer. Prefetch is kept small so a purge of a queue leaves little already in a worker's
hands (see README, "Purge-to-stop").
"""
import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from app.config import Config

if os.environ.get("DRAMATIQ_STUB") == "1":  # pure unit tests only
    from dramatiq.brokers.stub import StubBroker

    broker = StubBroker()
else:
    broker = RabbitmqBroker(url=Config.AMQP_URL, confirm_delivery=True)
dramatiq.set_broker(broker)
