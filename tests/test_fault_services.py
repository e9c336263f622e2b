"""Fault tests 2 and 3: RabbitMQ (`rabbitmqctl stop_app` / `start_app`) and PostgreSQL (a
cluster restart) go away in the middle of a campaign. Workers reconnect, the campaign
completes, nothing is lost and nobody receives an email twice.

Both disturb every test running on this machine for a few seconds, so the outages are kept
short and there is one campaign for each."""
import os
import subprocess
import time

import pika
import psycopg
from psycopg.rows import dict_row

from tests.conftest import wait_for
from tests.delivery_kit import assert_nothing_lost_nothing_doubled, seed_campaign, start, wait_status

# Slow sending and a small prefetch: most of the campaign is still in RabbitMQ when the fault
# hits, not already in the workers' hands.
RATE_ENV = {"SMTP_URLS": os.environ["SMTP_URL"] + "&rate=100", "dramatiq_queue_prefetch": "2", "PREPARE_BATCH": "50"}


def amqp_up() -> bool:
    try:
        pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"] + "?connection_attempts=1")).close()
        return True
    except pika.exceptions.AMQPError:
        return False


def test_rabbitmq_stopped_and_started_mid_campaign(db, smtp, workers, services):
    workers.stop()
    running = workers.start_more(extra_env=RATE_ENV)
    services("scheduler")
    cid = seed_campaign(db, 800, "rabbitdown")
    start(cid)
    wait_for(lambda: smtp.count() >= 200, message="campaign under way")
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
    try:
        time.sleep(2)
        assert not amqp_up()
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
    wait_for(amqp_up, timeout=60, message="RabbitMQ back")
    wait_status(db, cid, "completed", timeout=240)
    assert assert_nothing_lost_nothing_doubled(db, smtp, cid) == {"sent": 800}
    assert running.proc.poll() is None  # the same workers reconnected


def test_postgresql_restarted_mid_campaign(db, smtp, workers, services):
    workers.stop()
    workers.start_more(extra_env=RATE_ENV)
    services("scheduler")
    cid = seed_campaign(db, 800, "pgdown")
    start(cid)
    wait_for(lambda: smtp.count() >= 200, message="campaign under way")
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True,
                   capture_output=True, timeout=120)
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True, row_factory=dict_row) as fresh:
        wait_status(fresh, cid, "completed", timeout=240)
        assert assert_nothing_lost_nothing_doubled(fresh, smtp, cid) == {"sent": 800}
        unknown = fresh.execute(
            "SELECT count(*) AS n FROM journal WHERE campaign_id = %s AND kind = 'delivery.unknown'",
            (cid,)).fetchone()["n"]
        assert unknown == 0  # live workers' claims were never taken for dead ones
