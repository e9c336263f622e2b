"""Signed, expiring tokens for public links: no guessable ids ever appear in an email.

One token is signed per email sent, so signing is on the send path: the serializer is built
once per purpose, and tiny payloads skip itsdangerous' zlib attempt (a third of the cost).
"""
import functools
import hmac

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.serializer import Serializer
from itsdangerous.signer import HMACAlgorithm

from .config import Config

UNSUBSCRIBE = "unsubscribe"


class BadToken(ValueError):
    pass


class _Sha1(HMACAlgorithm):
    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return hmac.digest(key, value, "sha1")  # one C call, same bytes as hmac.new(...).digest()


class _Signer(TimestampSigner):
    """Derives the key once instead of on every signature (same key, same signatures)."""

    @functools.cached_property
    def _key(self) -> bytes:
        return super().derive_key()

    def derive_key(self, secret_key=None) -> bytes:
        return self._key if secret_key is None else super().derive_key(secret_key)


class _TokenSerializer(URLSafeTimedSerializer):
    SMALL = 100  # bytes of JSON that zlib is not tried on

    def __init__(self, secret_key: str, salt: str):
        super().__init__(secret_key, salt=salt, signer=_Signer, signer_kwargs={"algorithm": _Sha1()})
        self._signers = {}

    def make_signer(self, salt=None):
        """One signer per salt, kept: itsdangerous builds a new one for every token."""
        signer = self._signers.get(salt)
        if signer is None:
            signer = self._signers[salt] = super().make_signer(salt)
        return signer

    def dump_payload(self, obj) -> bytes:
        """The stock format, minus zlib.compress on a small payload: it only keeps a compressed
        form that is shorter, which a list of two ids never is, and loading reads both forms."""
        json = Serializer.dump_payload(self, obj)
        if len(json) >= self.SMALL:
            return super().dump_payload(obj)
        return base64_encode(json)


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    if not Config.SECRET_KEY:
        raise RuntimeError("SECRET_KEY is not set: public links cannot be signed")
    return _cached_serializer(Config.SECRET_KEY, purpose)


@functools.lru_cache(maxsize=32)
def _cached_serializer(secret_key: str, purpose: str) -> URLSafeTimedSerializer:
    return _TokenSerializer(secret_key, salt=f"mailer.{purpose}")


def sign(purpose: str, payload) -> str:
    return _serializer(purpose).dumps(payload)


def verify(purpose: str, token: str, max_age: int) -> dict:
    if not token or len(token) > 1000:
        raise BadToken("this link is not valid")
    try:
        return _serializer(purpose).loads(token, max_age=max_age)
    except BadData as exc:
        expired = "expired" in type(exc).__name__.lower() or "expired" in str(exc).lower()
        raise BadToken("this link has expired" if expired else "this link is not valid") from None


def unsubscribe_url(contact_id: int, campaign_id: int | None) -> str:
    return f"{Config.PUBLIC_URL}/u/{sign(UNSUBSCRIBE, [contact_id, campaign_id])}"
