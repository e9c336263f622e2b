"""Entry point for `dramatiq consumers.worker`: imports every actor so the worker consumes
every queue (or pick some with --queues)."""
from . import dispatch, importer, prepare  # noqa: F401
from .broker import broker  # noqa: F401
