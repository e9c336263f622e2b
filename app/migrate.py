"""Apply sql/migrations/NNN_*.sql in order, once each, refusing any applied file that changed."""
import hashlib
import sys

import psycopg

from .config import Config
from .db import SQL_DIR

LOCK_ID = 727_001  # advisory lock: two set-ups running at once apply each file once


class MigrationChanged(RuntimeError):
    pass


def migrate(database_url: str | None = None, out=sys.stdout) -> list[str]:
    applied_now = []
    with psycopg.connect(database_url or Config.DATABASE_URL, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " filename text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = dict(conn.execute("SELECT filename, checksum FROM schema_migrations").fetchall())
            for path in sorted((SQL_DIR / "migrations").glob("[0-9]*.sql")):
                text = path.read_text()
                checksum = hashlib.sha256(text.encode()).hexdigest()
                if path.name in done:
                    if done[path.name] != checksum:
                        raise MigrationChanged(
                            f"{path.name} was applied with checksum {done[path.name][:12]} but the "
                            f"file now has {checksum[:12]}: write a new migration instead of editing one"
                        )
                    continue
                with conn.transaction():
                    conn.execute(text)
                    conn.execute(
                        "INSERT INTO schema_migrations (filename, checksum) VALUES (%s, %s)",
                        (path.name, checksum),
                    )
                applied_now.append(path.name)
                print(f"applied {path.name}", file=out)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    return applied_now


if __name__ == "__main__":
    migrate()
