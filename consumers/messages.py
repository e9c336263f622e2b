"""The shapes our actors accept, checked before an actor runs.

An actor's signature is its schema. A message that does not fit (published by hand from
the management console, say, or by an older release) is failed at once, which makes
Dramatiq dead-letter it to the queue's `.XQ`, instead of being retried twenty times; the
dead-letter keeper records the same reason, computed by `problem()`.
"""
import functools
import inspect
import logging
import types
import typing
from typing import TypedDict

from dramatiq.middleware import Middleware, SkipMessage

log = logging.getLogger(__name__)
MAX_BATCH = 10_000
BIGINT = 2**63  # an int outside bigint fails every query it reaches: refused up front


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
    return _checker(annotation)(value)


@functools.cache
def _checker(annotation):
    """A check for one annotation, built once: the hints of a batch's TypedDict are then
    not resolved again for each of its emails (that cost ~50 µs an email)."""
    if annotation is int:  # every int of a message is an id or a cursor: a PostgreSQL bigint
        return lambda v: isinstance(v, int) and not isinstance(v, bool) and -BIGINT <= v < BIGINT
    if annotation is str:
        return lambda v: isinstance(v, str)
    if annotation is bool:
        return lambda v: isinstance(v, bool)
    if annotation is type(None):
        return lambda v: v is None
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is list:
        item = _checker(args[0])
        return lambda v: isinstance(v, list) and 0 < len(v) <= MAX_BATCH and all(item(x) for x in v)
    if origin in (typing.Union, types.UnionType):
        options = [_checker(a) for a in args]
        return lambda v: any(check(v) for check in options)
    if typing.is_typeddict(annotation):
        fields = [(k, _checker(h)) for k, h in typing.get_type_hints(annotation).items()]
        keys = {k for k, _ in fields}
        return lambda v: isinstance(v, dict) and keys <= v.keys() and all(check(v[k]) for k, check in fields)
    return lambda v: True


@functools.cache
def _signature(fn) -> tuple[inspect.Signature, dict]:
    return inspect.signature(fn), typing.get_type_hints(fn)


def problem(actor, args, kwargs) -> str | None:
    """Why these arguments cannot be given to the actor, or None when they fit."""
    signature, hints = _signature(actor.fn)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        return f"bad arguments for {actor.actor_name}: {exc}"
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
