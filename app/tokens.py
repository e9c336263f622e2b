"""Signed, expiring tokens for public links: no guessable ids ever appear in an email."""
from itsdangerous import BadData, URLSafeTimedSerializer

from .config import Config

UNSUBSCRIBE = "unsubscribe"


class BadToken(ValueError):
    pass


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    if not Config.SECRET_KEY:
        raise RuntimeError("SECRET_KEY is not set: public links cannot be signed")
    return URLSafeTimedSerializer(Config.SECRET_KEY, salt=f"mailer.{purpose}")


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
