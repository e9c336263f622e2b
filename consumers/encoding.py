"""Dramatiq's message encoder: orjson, with the standard library's json as the fallback.

A dispatch message carries 100 rendered emails (~220 KB); Dramatiq's JSONEncoder spent
8-12 % of the workers' CPU encoding them. orjson writes the same plain JSON (non-ASCII as
UTF-8 rather than \\u escapes), so messages published by hand from the management console
still decode, and a message we publish is readable by any JSON parser.

Where orjson and json differ, json decides, so nothing that worked before breaks:
- encode: orjson refuses integers beyond 64 bits, non-str dict keys and lone surrogates
  (all of which a hand-published message, decoded by json, may hold when a retry or a
  replay sends it again): such a message is encoded by json, as before.
- decode: orjson refuses NaN, Infinity, 1e400 and lone surrogate escapes, which json
  accepts: a body orjson refuses is decoded again by json, so a body that is not JSON fails
  with json's error, exactly as with Dramatiq's own encoder.
- orjson decodes an integer beyond 64 bits as a float where json gives an int. No id fits
  in either (PostgreSQL's bigint is 64 bits): the message validation refuses both, so
  such a message is dead-lettered at once with a reason (consumers/messages.py).
"""
import json

import orjson
from dramatiq.encoder import Encoder, MessageData
from dramatiq.errors import DecodeError

# Without these, orjson would write dataclasses and datetimes that json refuses: a message
# that cannot be sent stays one that cannot be sent, whichever library is tried first.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


class OrjsonEncoder(Encoder):
    def encode(self, data: MessageData) -> bytes:
        try:
            return orjson.dumps(data, option=_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return json.dumps(data, separators=(",", ":")).encode("utf-8")

    def decode(self, data: bytes) -> MessageData:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        # What orjson refused, as Dramatiq's JSONEncoder decodes it (and fails on it).
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError("failed to decode data %r" % (data,), data, e) from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise DecodeError("failed to decode message %r" % (text,), text, e) from None
