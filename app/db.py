"""Connection pool and named queries.

Every SQL statement lives in sql/queries/*.sql under a `-- name: <name>` header, listmonk
style, so the Python reads like the domain and the SQL can be read in one place.
"""
import re
import threading
from contextlib import nullcontext
from pathlib import Path

from flask import g, has_request_context

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from .config import Config

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.M)


class Queries:
    """Named statements parsed from sql/queries/*.sql; q.name gives the SQL text."""

    def __init__(self, directory: Path):
        self._sql = {}
        for path in sorted(directory.glob("*.sql")):
            parts = _NAME.split(path.read_text())
            for name, body in zip(parts[1::2], parts[2::2]):
                if name in self._sql:
                    raise ValueError(f"query {name} defined twice ({path.name})")
                self._sql[name] = body.strip().rstrip(";")

    def __getattr__(self, name: str) -> str:
        try:
            return self._sql[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r} in sql/queries") from None


q = Queries(SQL_DIR / "queries")

_pool = None
_pool_lock = threading.Lock()


def pool() -> ConnectionPool:
    """One pool per process, opened on first use (workers and the web app share this)."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ConnectionPool(
                    Config.DATABASE_URL, min_size=1, max_size=10, open=True,
                    kwargs={"row_factory": dict_row, "autocommit": False},
                    check=ConnectionPool.check_connection,
                )
    return _pool


def close_pool() -> None:
    global _pool
    if _pool is not None:
        _pool.close()
        _pool = None


def _reader():
    """The reads of one web request share one pooled connection in autocommit: a page's
    half-dozen queries then cost one checkout (and its health check), not a checkout, a
    check and a COMMIT each; while a send keeps PostgreSQL busy every round trip waits its
    turn, and those waits were most of a page's time (issue 6). Elsewhere, a pooled one.
    A request then holds at most two connections (this one and a service's transaction), and
    a thread holding two always finishes: the pool's ten cover gunicorn's eight threads."""
    if not has_request_context():
        return pool().connection()
    conn = g.get("_db_reader")
    if conn is None:
        conn = g._db_reader = pool().getconn()
        conn.autocommit = True
    return nullcontext(conn)


def release_reader(exc=None) -> None:
    """Hand the request's reader back (registered as an app-context teardown)."""
    conn = g.pop("_db_reader", None)
    if conn is not None:
        if not conn.broken:
            conn.autocommit = False
        pool().putconn(conn)


def fetchall(sql, params=None):
    with _reader() as conn:
        return conn.execute(sql, params).fetchall()


def fetchone(sql, params=None):
    with _reader() as conn:
        return conn.execute(sql, params).fetchone()


def fetch_together(*queries: tuple[str, dict]) -> list[list[dict]]:
    """Several reads in one round trip (psycopg's pipeline mode): a page's queries then wait
    for a busy PostgreSQL once instead of once each. Results in the order of the queries."""
    with _reader() as conn:
        with conn.pipeline():
            cursors = [conn.execute(sql, params) for sql, params in queries]
        return [cur.fetchall() for cur in cursors]


def execute(sql, params=None) -> int:
    with pool().connection() as conn:
        return conn.execute(sql, params).rowcount
