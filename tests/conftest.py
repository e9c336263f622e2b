"""Fixtures on real parts: a throwaway PostgreSQL database and RabbitMQ vhost per test session,
real Dramatiq worker processes, and a real SMTP server (aiosmtpd) that tests can program.

The environment is set before any project module is imported, because the configuration is
read from it once at import time.
"""
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = f"{os.getpid()}_{secrets.token_hex(3)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_base_db = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_base_amqp = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
DB_NAME = f"mailer_test_{RUN_ID}"
VHOST = f"mailer_test_{RUN_ID}"
SMTP_PORT = free_port()
os.environ.update({
    "DATABASE_URL": urlunsplit(urlsplit(_base_db)._replace(path=f"/{DB_NAME}")),
    "AMQP_URL": urlunsplit(urlsplit(_base_amqp)._replace(path=f"/{VHOST}")),
    "SMTP_URL": f"smtp://127.0.0.1:{SMTP_PORT}?timeout=10",
    "SECRET_KEY": secrets.token_hex(16),
    "PUBLIC_URL": "http://127.0.0.1:5000",
    "dramatiq_restart_delay": "1000",
    # Delivery timings shrunk for tests (production defaults in app/config.py).
    "RETRY_BASE_MS": "300",
    "SMTP_COOLDOWN_SECONDS": "2",
    "HEARTBEAT_SECONDS": "1",
    "WORKER_DEAD_AFTER": "5 seconds",
    "PURGE_CONFIRM_SECONDS": "7",
    "SCHEDULER_INTERVAL": "0.5",
})
ADMIN_DB_URL = urlunsplit(urlsplit(_base_db)._replace(path="/postgres"))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from tests.smtp_server import SmtpServer  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def database():
    with psycopg.connect(ADMIN_DB_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
    from app.migrate import migrate

    migrate(os.environ["DATABASE_URL"], out=open(os.devnull, "w"))
    yield os.environ["DATABASE_URL"]
    from app.db import close_pool

    close_pool()
    with psycopg.connect(ADMIN_DB_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))


@pytest.fixture(scope="session")
def vhost():
    from app.broker_setup import delete_vhost, load

    load(os.environ["AMQP_URL"])
    yield VHOST
    delete_vhost(os.environ["AMQP_URL"])


@pytest.fixture
def db():
    """A plain autocommit connection for arranging and checking state."""
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture(scope="session")
def smtp_server():
    server = SmtpServer("127.0.0.1", SMTP_PORT)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp(smtp_server):
    smtp_server.reset()
    yield smtp_server
    smtp_server.reset()


class Workers:
    """Real `dramatiq consumers.worker` processes against the session's vhost."""

    def __init__(self, processes=1, threads=4, extra_env=None):
        self.processes, self.threads, self.extra_env = processes, threads, extra_env or {}
        self.proc = None
        self.log = open(ROOT / "var" / f"test-workers-{RUN_ID}.log", "ab")

    def start(self):
        env = {**os.environ, **self.extra_env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "consumers.worker", "--processes", str(self.processes),
             "--threads", str(self.threads)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def child_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self, timeout=15):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def workers(vhost, smtp_server):
    (ROOT / "var").mkdir(exist_ok=True)
    started = []

    def start(**kwargs):
        w = Workers(**kwargs).start()
        started.append(w)
        return w

    w = start()
    w.start_more = start
    yield w
    for w in started:
        w.stop()


@pytest.fixture
def app(vhost):
    from app import create_app

    app = create_app({"TESTING": True})
    return app


@pytest.fixture
def csrf_off(app):
    app.config["WTF_CSRF_ENABLED"] = False
    return app


MANAGER = ("admin", "correct horse battery")


@pytest.fixture(scope="session")
def manager(database):
    from app.auth import set_password

    set_password(*MANAGER)
    return MANAGER


@pytest.fixture
def client(csrf_off, manager):
    """A logged-in test client with CSRF checks off (CSRF has its own tests)."""
    c = csrf_off.test_client()
    r = c.post("/login", data={"username": manager[0], "password": manager[1]})
    assert r.status_code == 302, r.data
    return c


def wait_for(predicate, timeout=60, interval=0.2, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture
def live_server(app, manager):
    """The app served on a real port for the browser tests."""
    import threading

    from werkzeug.serving import make_server

    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture
def page(browser, live_server, manager):
    """A browser page already logged in."""
    context = browser.new_context(base_url=live_server)
    p = context.new_page()
    p.set_default_timeout(15_000)
    p.goto("/login")
    p.fill("#username", manager[0])
    p.fill("#password", manager[1])
    p.click("#login-form button[type=submit]")
    p.wait_for_url(live_server + "/")
    yield p
    context.close()


class Service:
    """A long-running consumer (`python -m consumers.<name>`) as a real process."""

    def __init__(self, name: str, extra_env=None):
        self.name = name
        self.log = open(ROOT / "var" / f"test-{name}-{RUN_ID}.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", f"consumers.{name}"], cwd=ROOT,
                                     env={**os.environ, **(extra_env or {})}, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def services(vhost):
    """Start consumers by module name: services("scheduler"), services("control")...;
    all are stopped when the test ends."""
    (ROOT / "var").mkdir(exist_ok=True)
    started = []

    def start(name, extra_env=None):
        service = Service(name, extra_env)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def pytest_collection_modifyitems(items):
    """The hostile-value segment tests evaluate about 1,400 generated functions over every
    contact of the session's database: run them before the fault tests add tens of thousands."""
    items.sort(key=lambda item: 0 if item.module.__name__.endswith("test_segment_safety") else 1)
