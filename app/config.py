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
    # Contact imports (issue 5): a file over this is refused before it is read.
    IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 256 * 1024 * 1024)
    UNSUBSCRIBE_TOKEN_MAX_AGE = env_int("UNSUBSCRIBE_TOKEN_MAX_AGE", 180 * 24 * 3600)
    PREPARE_BATCH = env_int("PREPARE_BATCH", 100)
    # Segments (issue 3): statement timeouts for evaluating procedures read-only — validation
    # and preview, one merge call per prepare batch, and materialising a campaign or list.
    SEGMENT_TIMEOUT_MS = env_int("SEGMENT_TIMEOUT_MS", 30_000)
    MERGE_TIMEOUT_MS = env_int("MERGE_TIMEOUT_MS", 10_000)
    MATERIALISE_TIMEOUT_MS = env_int("MATERIALISE_TIMEOUT_MS", 600_000)
    DRY_RUN_LIMIT = env_int("DRY_RUN_LIMIT", 20_000)  # recipients a dry run renders, in the request
    MATERIALISE_FIRST_PAGE = env_int("MATERIALISE_FIRST_PAGE", 1000)  # recipients sent before the rest is written
    # Delivery (issue 4). Several outbound servers, in order of preference, comma-separated;
    # each URL may carry max_connections= and rate= (per worker process), see app/smtp.py.
    SMTP_URLS = os.environ.get("SMTP_URLS") or None  # unset: SMTP_URL alone
    SMTP_FAILOVER_AFTER = env_int("SMTP_FAILOVER_AFTER", 3)  # connection faults in a row
    SMTP_COOLDOWN_SECONDS = float(env("SMTP_COOLDOWN_SECONDS", "10"))
    # Retries: exponential backoff with jitter from RETRY_BASE_MS, capped well below
    # RabbitMQ's 30-minute consumer timeout (a delayed message is held unacked until due).
    RETRY_BASE_MS = env_int("RETRY_BASE_MS", 30_000)
    RETRY_MAX_MS = min(env_int("RETRY_MAX_MS", 15 * 60 * 1000), 20 * 60 * 1000)
    # Deliveries claimed per database round trip: also the most a killed worker thread can
    # leave `unknown`.
    DISPATCH_CLAIM_CHUNK = env_int("DISPATCH_CLAIM_CHUNK", 50)
    ENQUEUE_PAGES = env_int("ENQUEUE_PAGES", 10)  # prepare batches per enqueue message
    HEARTBEAT_SECONDS = float(env("HEARTBEAT_SECONDS", "2"))
    WORKER_DEAD_AFTER = env("WORKER_DEAD_AFTER", "20 seconds")  # heartbeat silence -> claims unknown
    UNKNOWN_AFTER = env("UNKNOWN_AFTER", "30 minutes")  # a claim this old is unknown regardless
    PURGE_CONFIRM_SECONDS = float(env("PURGE_CONFIRM_SECONDS", "8"))
    CONTROL_MAX_BODY = env_int("CONTROL_MAX_BODY", 4096)
