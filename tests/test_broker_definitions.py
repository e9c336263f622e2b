"""broker/definitions.json and Dramatiq never disagree: the file declares each actor queue
(`q`, `q.DQ`, `q.XQ`) with exactly the arguments Dramatiq declares, so loading it into RabbitMQ
before or after the workers start never ends in PRECONDITION_FAILED."""
import json
import os
from urllib.parse import quote, urlsplit, urlunsplit

import pika
import pytest
import requests
from dramatiq import Message
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import dq_name, xq_name

from app.broker_setup import DEFINITIONS, _api, delete_vhost, load
from tests.conftest import ROOT, RUN_ID, VHOST, Workers, wait_for


def file_queues() -> dict[str, dict]:
    return {q["name"]: q for q in json.loads(DEFINITIONS.read_text())["queues"]}


def actor_queues() -> tuple[RabbitmqBroker, set[str]]:
    """The broker the workers run and every queue an actor of consumers.worker declares."""
    import consumers.worker  # noqa: F401  (imports every actor, as `dramatiq consumers.worker` does)
    from consumers.broker import broker

    return broker, set(broker.get_declared_queues())


def test_every_actor_queue_is_in_the_file_with_dramatiqs_arguments():
    broker, queues = actor_queues()
    declared = file_queues()
    assert {"enqueue", "prepare", "dispatch"} <= queues
    for q in sorted(queues):
        for name, arguments in ((q, broker._build_queue_arguments(q)),
                                (dq_name(q), broker._build_queue_arguments(q)),
                                (xq_name(q), {"x-message-ttl": DEAD_MESSAGE_TTL})):
            assert name in declared, f"{name} (a queue of actor queue {q}) is missing from {DEFINITIONS.name}"
            assert declared[name]["arguments"] == arguments, name
            assert declared[name]["durable"] is True and declared[name]["auto_delete"] is False, name


def test_the_file_has_no_dramatiq_style_queue_without_an_actor():
    """A stale `x`, `x.DQ` or `x.XQ` would be a queue nothing consumes, silently filling up."""
    _, queues = actor_queues()
    for name, q in file_queues().items():
        base = name.rsplit(".", 1)[0] if name.endswith((".DQ", ".XQ")) else name
        dead_letters_like_dramatiq = q["arguments"].get("x-dead-letter-routing-key") == xq_name(base)
        if name != base or dead_letters_like_dramatiq:
            assert base in queues, f"{name} is in {DEFINITIONS.name} but no actor consumes {base}"


@pytest.fixture
def fresh_vhost(vhost):
    """An empty vhost of this test's own, so the file is loaded before any worker ever ran."""
    url = urlunsplit(urlsplit(os.environ["AMQP_URL"])._replace(path=f"/{VHOST}_defs"))
    yield url
    delete_vhost(url)


def api_queue(vhost: str, name: str) -> dict:
    base, auth = _api(os.environ.get("RABBITMQ_API", "http://guest:guest@127.0.0.1:15672/api"))
    r = requests.get(f"{base}/queues/{quote(vhost, safe='')}/{quote(name, safe='')}", auth=auth, timeout=10)
    r.raise_for_status()
    return r.json()


def test_load_the_file_then_start_workers_and_enqueue(fresh_vhost):
    vhost = load(fresh_vhost)
    assert vhost == f"{VHOST}_defs"
    for name, q in file_queues().items():
        assert api_queue(vhost, name)["arguments"] == q["arguments"], name

    log_path = ROOT / "var" / f"test-workers-{RUN_ID}.log"
    log_path.parent.mkdir(exist_ok=True)
    log_start = log_path.stat().st_size if log_path.exists() else 0
    workers = Workers(extra_env={"AMQP_URL": fresh_vhost}).start()
    try:
        _, queues = actor_queues()
        wait_for(lambda: all(api_queue(vhost, q).get("consumers", 0) >= 1 for q in queues),
                 timeout=60, message="a worker consuming every actor queue")

        # A publisher declares every queue as Dramatiq does (q, q.DQ, q.XQ), then enqueues,
        # now and delayed; the worker takes both. enqueue_campaign of no campaign is a no-op.
        publisher = RabbitmqBroker(url=fresh_vhost, confirm_delivery=True)
        try:
            for q in sorted(queues):
                publisher.declare_queue(q, ensure=True)
            message = Message(queue_name="enqueue", actor_name="enqueue_campaign", args=(0,), kwargs={}, options={})
            publisher.enqueue(message)
            publisher.enqueue(message.copy(message_id=message.message_id + "-later"), delay=100)
        finally:
            publisher.close()
        wait_for(lambda: (api_queue(vhost, "enqueue").get("message_stats", {}).get("ack", 0) >= 2
                          and api_queue(vhost, "enqueue")["messages"] == 0
                          and api_queue(vhost, "enqueue.DQ")["messages"] == 0),
                 timeout=60, message="both messages consumed")

        load(fresh_vhost)  # loading again under running workers is as harmless
        assert workers.proc.poll() is None
    finally:
        workers.stop()
    with open(log_path, "rb") as log:
        log.seek(log_start)
        assert b"PRECONDITION_FAILED" not in log.read()


def test_a_mismatch_would_be_refused(fresh_vhost):
    """The check above is not vacuous: RabbitMQ does refuse a queue re-declared differently."""
    load(fresh_vhost)
    connection = pika.BlockingConnection(pika.URLParameters(fresh_vhost))
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            connection.channel().queue_declare("prepare", durable=True, arguments={"x-max-priority": 10})
        assert refused.value.reply_code == 406 and "PRECONDITION_FAILED" in refused.value.reply_text
    finally:
        connection.close()
