"""Pieces every benchmark shares: a throwaway database and RabbitMQ vhost, the processes under
test, /proc sampling, a logged-in web client, the result table and the JSON record.

Benchmarks run next to other people's work on a shared 2-core machine, so every run builds
its own world (database `mailer_bench_<pid>_<hex>`, vhost of the same name, free ports) and
tears it down however it ends; and every figure comes with a baseline measured in the same
run, because absolute numbers move with the neighbours' load.
"""
import json
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
VENV_BIN = ROOT / ".venv" / "bin"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A run that cannot be trusted: the harness stops and says why, loudly."""


def log(message: str) -> None:
    print(f"\033[1m--> {message}\033[0m", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "a condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- the throwaway world ------------------------------------------------------------------

@contextmanager
def bench_world(name: str, broker: bool = True):
    """A fresh, migrated database and a vhost loaded with broker/definitions.json (none with
    broker=False, for benchmarks of the database alone).

    Sets DATABASE_URL, AMQP_URL and SECRET_KEY in os.environ *before* any app module is
    imported (app.config reads them once), so import app code only inside the `with`.
    Yields the run id; drops both on the way out, whatever happened.
    """
    import psycopg
    from psycopg import sql

    run_id = f"mailer_bench_{os.getpid()}_{secrets.token_hex(3)}"
    base_db = urlsplit(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/mailer"))
    base_amqp = urlsplit(os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    admin = urlunsplit(base_db._replace(path="/postgres"))
    os.environ.update({
        "DATABASE_URL": urlunsplit(base_db._replace(path=f"/{run_id}")),
        "AMQP_URL": urlunsplit(base_amqp._replace(path=f"/{run_id}")),
        "SECRET_KEY": secrets.token_hex(24),
        "PUBLIC_URL": "http://127.0.0.1:5000",
    })
    log(f"{name}: database and vhost {run_id}")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(run_id)))
    try:
        from app.broker_setup import delete_vhost, load
        from app.migrate import migrate

        migrate(os.environ["DATABASE_URL"], out=open(os.devnull, "w"))
        if broker:
            load(os.environ["AMQP_URL"])
        try:
            yield run_id
        finally:
            from app.db import close_pool

            close_pool()
            if broker:
                delete_vhost(os.environ["AMQP_URL"])
    finally:
        for attempt in range(30):  # a neighbour's test may be restarting PostgreSQL right now
            try:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(run_id)))
                break
            except psycopg.OperationalError:
                time.sleep(2)
        log(f"{name}: dropped {run_id}")


class Database:
    """The harness's own autocommit connection. Reads survive a PostgreSQL restart (other
    people's fault tests restart the shared server): they reconnect and retry, and the restart
    is counted so the report can say its figures were disturbed."""

    def __init__(self, url: str, **kwargs):
        self.url, self.kwargs, self.restarts = url, kwargs, 0
        self.conn = self._connect()

    def _connect(self):
        import psycopg

        return psycopg.connect(self.url, autocommit=True, **self.kwargs)

    def execute(self, query, params=None):
        """For writes: no retry (not all are idempotent)."""
        return self.conn.execute(query, params)

    def read(self, query, params=None) -> list:
        import psycopg

        deadline = time.monotonic() + 120
        while True:
            try:
                return self.conn.execute(query, params).fetchall()
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                self.restarts += 1
                log("PostgreSQL connection lost (restarted by someone?): reconnecting")
                time.sleep(1)
                try:
                    self.conn.close()
                    self.conn = self._connect()
                except psycopg.OperationalError:
                    continue

    def close(self):
        self.conn.close()


def queries():
    """Named benchmark statements from scripts/benchlib/sql/*.sql (the app's own loader)."""
    from app.db import Queries

    return Queries(Path(__file__).resolve().parent / "sql")


# --- processes under test -----------------------------------------------------------------

class Proc:
    """A child in its own process group, stopped with SIGTERM (then SIGKILL) on exit."""

    def __init__(self, name: str, argv: list[str], env: dict | None = None, logdir: Path | None = None):
        self.name = name
        self.log_path = (logdir or ROOT / "var") / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})},
                                      stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tree(self) -> list[int]:
        """This process and all its descendants (dramatiq and gunicorn fork workers)."""
        return [self.pid, *descendants(self.pid)] if self.alive() else []

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass
        self._log.close()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def descendants(pid: int) -> list[int]:
    out = []
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return out
    for k in kids:
        out.append(k)
        out.extend(descendants(k))
    return out


def pids_named(comm: str) -> list[int]:
    """Processes whose command name (/proc/<pid>/comm) is `comm`, e.g. beam.smp or postgres."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


ACCESS_LOG = "gunicorn-access.log"


def server_times_ms(logdir: Path, offset: int, paths: set[str]) -> list[float]:
    """Times inside gunicorn of the GETs of `paths` logged after byte `offset` of the access log."""
    try:
        with open(logdir / ACCESS_LOG, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    return [int(p[3]) / 1000 for p in (line.split() for line in lines)
            if len(p) == 4 and p[0] == "GET" and p[1] in paths and p[3].isdigit()]


def start_web(logdir: Path, workers: int = 2, threads: int = 8) -> tuple[Proc, str]:
    """The real UI under gunicorn, as scripts/run serves it, on a free port."""
    port = free_port()
    # The access log carries each request's time inside gunicorn (%(D)s, microseconds): the
    # server's share of the latency the load client sees.
    proc = Proc("gunicorn", [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                             "--threads", str(threads), "--access-logfile", str(logdir / ACCESS_LOG),
                             "--access-logformat", "%(m)s %(U)s %(s)s %(D)s", "app:create_app()"], logdir=logdir)
    url = f"http://127.0.0.1:{port}"
    import requests

    def up():
        if not proc.alive():
            raise BenchError(f"gunicorn exited:\n{proc.tail()}")
        try:
            return requests.get(url + "/login", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, 30, 0.1, "the web app")
    return proc, url


def start_workers(logdir: Path, processes: int, threads: int, env: dict, name: str = "workers") -> Proc:
    """Real `dramatiq consumers.worker` processes, started the way scripts/run starts them."""
    return Proc(name, ["nice", "-n", os.environ.get("WORKER_NICE", "10"), str(VENV_BIN / "dramatiq"),
                       "consumers.worker", "--processes", str(processes), "--threads", str(threads)],
                env=env, logdir=logdir)


def worker_children(proc: Proc, expected: int, timeout: float = 30) -> list[int]:
    """The forked worker processes once all have imported the actors (they hold the RSS)."""
    def ready():
        if not proc.alive():
            raise BenchError(f"dramatiq exited:\n{proc.tail()}")
        kids = descendants(proc.pid)
        ready = proc.log_path.read_text(errors="replace").count("Worker process is ready")
        return kids if len(kids) >= expected and ready >= expected else None

    return wait_for(ready, timeout, 0.1, "the dramatiq worker processes")


# --- /proc sampling -----------------------------------------------------------------------

def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, key: str) -> int | None:
    """A field of /proc/<pid>/status in kB: VmRSS now, VmHWM the peak since the process started."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Sampler:
    """Samples CPU time and RSS of groups of processes in a thread until stopped.

    Groups are callables returning pids, re-evaluated each tick, so processes that start
    later (forked workers, new PostgreSQL backends) are counted from zero and processes that
    exit keep their last reading.
    """

    def __init__(self, groups: dict, interval: float = 0.25):
        self.groups, self.interval = groups, interval
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self.peak_rss: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._baseline_taken = False

    def _tick(self):
        for group, pids in self.groups.items():
            try:
                found = pids()
            except Exception:  # noqa: BLE001 - e.g. PostgreSQL restarted by a neighbour: the run reports it
                continue
            for pid in found:
                cpu = cpu_seconds(pid)
                if cpu is None:
                    continue
                key = (group, pid)
                if key not in self.first:
                    self.first[key] = cpu if not self._baseline_taken else 0.0
                self.last[key] = cpu
                rss = status_kb(pid, "VmRSS") or 0
                self.peak_rss[key] = max(self.peak_rss.get(key, 0), rss)
        self._baseline_taken = True

    def _run(self):
        while not self._stop.wait(self.interval):
            self._tick()

    def start(self) -> "Sampler":
        self._tick()
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self._tick()

    def cpu_by_group(self) -> dict[str, float]:
        total: dict[str, float] = {g: 0.0 for g in self.groups}
        for key, cpu in self.last.items():
            total[key[0]] += cpu - self.first[key]
        return total


# --- the web UI as the manager uses it ----------------------------------------------------

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class WebClient:
    """A logged-in session against the real app, sending the CSRF token like a browser."""

    def __init__(self, base_url: str, username: str, password: str):
        import requests

        self.base = base_url
        self.http = requests.Session()
        page = self.http.get(base_url + "/login", timeout=10)
        r = self.http.post(base_url + "/login", data={"csrf_token": self._token(page.text), "username": username,
                                                      "password": password}, allow_redirects=False, timeout=10)
        if r.status_code != 302:
            raise BenchError(f"login refused ({r.status_code})")
        self.csrf = self._token(self.http.get(base_url + "/lists", timeout=10).text)

    @staticmethod
    def _token(html: str) -> str:
        m = _CSRF.search(html)
        if not m:
            raise BenchError("no CSRF token on the page")
        return m.group(1)

    def get(self, path: str, **kw):
        return self.http.get(self.base + path, timeout=kw.pop("timeout", 30), **kw)

    def post_form(self, path: str, data: dict, **kw):
        return self.http.post(self.base + path, data={"csrf_token": self.csrf, **data},
                              timeout=kw.pop("timeout", 120), **kw)


def make_manager() -> tuple[str, str]:
    from app.auth import set_password

    creds = ("bench", secrets.token_urlsafe(12))
    set_password(*creds)
    return creds


# --- reporting ----------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def print_table(rows: list[tuple], headers: tuple = ("figure", "value", "goal / note")) -> None:
    cells = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    print(line)
    for i, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            print(line)
    print(line, flush=True)


def _finite(value):
    """JSON has no Infinity or NaN: a figure that could not be measured is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_results(name: str, figures: dict, details: dict) -> Path:
    """bench/results/<name>-<UTC timestamp>.json (git-ignored): the figures and how they were made."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    record = {"name": name, "at": stamp, "figures": figures, "details": details}
    path.write_text(json.dumps(_finite(record), indent=2, default=str) + "\n")
    return path


def emit(figures: dict) -> None:
    """The last line of every sub-command: one JSON object other tools can read."""
    print(json.dumps(_finite(figures), default=str), flush=True)
