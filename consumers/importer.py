"""imports: contact imports run in the background, one file per message (queue `imports`).

The work and its all-or-nothing transaction live in app/services/importer.py; a redelivered
or retried message for an import that finished finds nothing to do.
"""
import dramatiq

from app.services import importer

from .broker import broker  # noqa: F401  (sets the broker before actors are declared)


@dramatiq.actor(queue_name="imports", max_retries=importer.MAX_ATTEMPTS - 1, min_backoff=5_000,
                max_backoff=60_000, time_limit=4 * 3600 * 1000)
def run_import(import_id: int):
    importer.run(import_id)
