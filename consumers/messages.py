"""The shapes our actors accept, checked before an actor runs.

An actor's signature is its schema. A message that does not fit (published by hand from
the management console, say, or by an older release) is failed at once, which makes
Dramatiq dead-letter it to the queue's `.XQ`, instead of being retried twenty times; the
dead-letter keeper records the same reason, computed by `problem()`.
"""
import inspect
import logging
import types
import typing
from typing import TypedDict

from dramatiq.middleware import Middleware, SkipMessage

log = logging.getLogger(__name__)
MAX_BATCH = 10_000


class Email(TypedDict):
    """One rendered email inside a dispatch batch (short keys keep the messages small)."""

    d: int  # delivery id
    to: str
    n: str  # recipient name
    s: str  # subject
    h: str  # html
    t: str  # text
    u: str | None  # unsubscribe URL


def _fits(value, annotation) -> bool:
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if annotation is bool:
        return isinstance(value, bool)
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is list:
        return isinstance(value, list) and 0 < len(value) <= MAX_BATCH and all(_fits(v, args[0]) for v in value)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if typing.is_typeddict(annotation):
        hints = typing.get_type_hints(annotation)
        return isinstance(value, dict) and hints.keys() <= value.keys() and all(
            _fits(value[k], h) for k, h in hints.items())
    return True


def problem(actor, args, kwargs) -> str | None:
    """Why these arguments cannot be given to the actor, or None when they fit."""
    signature = inspect.signature(actor.fn)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        return f"bad arguments for {actor.actor_name}: {exc}"
    hints = typing.get_type_hints(actor.fn)
    for name, value in bound.arguments.items():
        if name in hints and not _fits(value, hints[name]):
            expected = getattr(hints[name], "__name__", hints[name])
            return f"bad arguments for {actor.actor_name}: {name} is not a valid {expected}"
    return None


class ValidateMessages(Middleware):
    """Fail a message whose arguments do not fit its actor, before it runs."""

    def before_process_message(self, broker, message):
        actor = broker.get_actor(message.actor_name)
        try:
            reason = problem(actor, message.args, message.kwargs)
        except Exception as exc:  # arguments odd enough to break the check itself
            reason = f"bad arguments for {actor.actor_name}: {exc!r:.200}"
        if reason:
            log.error("Dead-lettering message %s: %s", message.message_id, reason)
            message.fail()
            raise SkipMessage(reason)
