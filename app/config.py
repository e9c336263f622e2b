"""Configuration from environment variables, with defaults that work on a fresh machine."""
import os


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


class Config:
    DATABASE_URL = env("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/mailer")
    AMQP_URL = env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    RABBITMQ_API = env("RABBITMQ_API", "http://guest:guest@127.0.0.1:15672/api")
    SMTP_URL = env("SMTP_URL", "smtp://127.0.0.1:2525")
    PUBLIC_URL = env("PUBLIC_URL", "http://127.0.0.1:5000").rstrip("/")
    # No default: a signing key must come from the environment (scripts/run makes one).
    SECRET_KEY = os.environ.get("SECRET_KEY")
    MAX_ATTACHMENT_BYTES = env_int("MAX_ATTACHMENT_BYTES", 10 * 1024 * 1024)
    MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
    UNSUBSCRIBE_TOKEN_MAX_AGE = env_int("UNSUBSCRIBE_TOKEN_MAX_AGE", 180 * 24 * 3600)
    PREPARE_BATCH = env_int("PREPARE_BATCH", 100)
