"""Load broker/definitions.json into RabbitMQ through the management HTTP API.

The file declares Dramatiq's queues with exactly the arguments Dramatiq uses, so loading it
before or after a worker starts never fails with PRECONDITION_FAILED.
"""
import json
import sys
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import requests

from .config import Config

DEFINITIONS = Path(__file__).resolve().parent.parent / "broker" / "definitions.json"


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _api(api_url: str):
    parts = urlsplit(api_url)
    auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
    base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}{parts.path.rstrip('/')}"
    return base, auth


def definitions_for(vhost: str) -> dict:
    data = json.loads(DEFINITIONS.read_text())
    for section in ("queues", "exchanges", "bindings", "policies"):
        for item in data.get(section, []):
            item["vhost"] = vhost
    data["vhosts"] = [{"name": vhost}]
    return data


def load(amqp_url: str | None = None, api_url: str | None = None) -> str:
    vhost = vhost_of(amqp_url or Config.AMQP_URL)
    base, auth = _api(api_url or Config.RABBITMQ_API)
    user = auth[0]
    requests.put(f"{base}/vhosts/{quote(vhost, safe='')}", auth=auth, timeout=10).raise_for_status()
    requests.put(f"{base}/permissions/{quote(vhost, safe='')}/{quote(user, safe='')}", auth=auth, timeout=10,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    r = requests.post(f"{base}/definitions", auth=auth, json=definitions_for(vhost), timeout=30)
    r.raise_for_status()
    return vhost


def queue_depths(amqp_url: str | None = None, api_url: str | None = None) -> dict[str, int]:
    """Messages per queue of the vhost, ready and unacknowledged (held by consumers) alike.

    The management API refreshes these figures every few seconds (collect_statistics_interval,
    5 s by default): callers must not act on one reading alone.
    """
    base, auth = _api(api_url or Config.RABBITMQ_API)
    vhost = quote(vhost_of(amqp_url or Config.AMQP_URL), safe="")
    r = requests.get(f"{base}/queues/{vhost}", auth=auth, timeout=5,
                     params={"columns": "name,messages_ready,messages_unacknowledged"})
    r.raise_for_status()
    return {x["name"]: int(x.get("messages_ready") or 0) + int(x.get("messages_unacknowledged") or 0)
            for x in r.json()}


def delete_vhost(amqp_url: str, api_url: str | None = None) -> None:
    base, auth = _api(api_url or Config.RABBITMQ_API)
    requests.delete(f"{base}/vhosts/{quote(vhost_of(amqp_url), safe='')}", auth=auth, timeout=10)


if __name__ == "__main__":
    print(f"loaded {DEFINITIONS.name} into vhost {load()!r}", file=sys.stderr)
