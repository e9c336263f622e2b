"""imports: contact work too long for a web request, on queue `imports`: an import (one file
per message) and a bulk action on a large filter.

The work and its all-or-nothing transactions live in app/services/importer.py and
app/services/contact.py; a redelivered or retried message for an import that finished finds
nothing to do, and a bulk action is one idempotent statement.
"""
import dramatiq
from werkzeug.datastructures import MultiDict

from app.services import contact, importer

from .broker import broker  # noqa: F401  (sets the broker before actors are declared)


@dramatiq.actor(queue_name="imports", max_retries=importer.MAX_ATTEMPTS - 1, min_backoff=5_000,
                max_backoff=60_000, time_limit=4 * 3600 * 1000)
def run_import(import_id: int):
    importer.run(import_id)


@dramatiq.actor(queue_name="imports", max_retries=3, min_backoff=5_000, max_backoff=60_000, time_limit=3600 * 1000)
def bulk_contacts(action: str, filters: dict, list_id: int | None, tag: str | None):
    contact.bulk(action, contact.Filter.from_args(MultiDict(filters)), None, list_id, tag)
