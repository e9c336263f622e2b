"""`scripts/bench send`: a personalised campaign through the real Send path into smtp-sink.

Phases, each on real parts (gunicorn, `dramatiq consumers.worker`, RabbitMQ with persistent
messages and publisher confirms, PostgreSQL, Postfix's smtp-sink on loopback):
1. baseline: `smtp-source -d -s 16` with our message size into the same sink;
2. a 10,000-recipient campaign (peak worker RSS for the flatness comparison; also a warm-up);
3. the measured campaign (--recipients, default 100,000): rate from Send to completed, Send to
   the first email at the sink, CPU per 1,000 emails per component, peak RSS per worker, UI p95
   at 20 requests/s during the send, and the honesty checks (sink count = `sent` rows = journal);
4. a short sample campaign into a second sink that dumps what it receives: every received
   message is checked for correct personalisation against the database;
5. materialising 1,000,000 deliveries: `campaigns.start` on a list of that size.
"""
import argparse
import html as htmlmod
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from email import policy
from email.parser import BytesParser
from pathlib import Path

from .common import (ACCESS_LOG, ROOT, VENV_BIN, BenchError, Database, Proc, Sampler, WebClient, bench_world,
                     descendants, emit, free_port, log, make_manager, percentile, pids_named, print_table, queries,
                     server_times_ms, start_web, start_workers, status_kb, wait_for, worker_children, write_results)

SUBJECT = ("{{ contact.name }}, your {{ contact.attributes.plan }} plan in "
           "{{ contact.attributes.city }} (#{{ contact.id }})")
BODY = """<html><body>
<h1>Hello {{ contact.name }},</h1>
<p>Thank you for another year on the <b>{{ contact.attributes.plan }}</b> plan. The team in
{{ contact.attributes.city }} has put together what changed this season, and what comes next.</p>
<ul>
<li>Faster exports: reports of any size now arrive in under a minute.</li>
<li>Shared folders: invite colleagues and decide who may edit what.</li>
<li>A new mobile app, with offline mode for the days without a signal.</li>
</ul>
<p>Your member number is {{ contact.id }}; quote it when you write to us, and we will find your
account at once. If anything is not as it should be, reply to this email.</p>
<p>See you soon in {{ contact.attributes.city }},<br>The Example team</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> from these emails.</p>
</body></html>"""
DUMP_MARK = "=====BENCH-MESSAGE====="


def expected(contact: dict) -> tuple[str, list[str], list[str]]:
    """What a correctly personalised message must hold, computed here, not by the app."""
    a, name, cid = contact["attributes"], contact["name"], contact["contact_id"]
    subject = f"{name}, your {a['plan']} plan in {a['city']} (#{cid})"
    in_html = [f"Hello {htmlmod.escape(name)},", f"<b>{a['plan']}</b> plan", f"The team in\n{a['city']}",
               f"member number is {cid};", f"See you soon in {a['city']},"]
    in_text = [f"Hello {name},", f"member number is {cid};", a["city"], a["plan"]]
    return subject, in_html, in_text


class Sink:
    """Postfix's smtp-sink on a free loopback port, counting messages (-c) and optionally
    dumping them all into one file (-D) for the personalisation check."""

    def __init__(self, logdir: Path, name: str, dump_dir: Path | None = None):
        if not shutil.which("smtp-sink"):
            raise BenchError("smtp-sink is missing: scripts/bench installs Debian's postfix package")
        self.port = free_port()
        self.dump_dir = dump_dir
        argv = ["smtp-sink", "-c"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]  # smtp-sink refuses to run as root without it
        if dump_dir:
            dump_dir.mkdir(parents=True, exist_ok=True)
            dump_dir.chmod(0o777)
            argv += ["-S", f"\\n{DUMP_MARK}\\n", "-D", str(dump_dir / "dump")]
        self.proc = Proc(name, argv + [f"127.0.0.1:{self.port}", "256"], logdir=logdir)
        wait_for(self._listening, 10, 0.05, "smtp-sink")

    def _listening(self) -> bool:
        import socket

        if not self.proc.alive():
            raise BenchError(f"smtp-sink exited:\n{self.proc.tail()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def count(self) -> int:
        """Messages received so far: the last `mesg=` counter smtp-sink printed."""
        try:
            with open(self.proc.log_path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 400))
                tail = f.read().decode(errors="replace")
        except OSError:
            return 0
        found = re.findall(r"mesg=(\d+)", tail)
        return int(found[-1]) if found else 0

    def messages(self) -> list:
        parser = BytesParser(policy=policy.default)
        raw = b"".join(p.read_bytes() for p in sorted(self.dump_dir.glob("dump*")))
        chunks = [c for c in raw.split(DUMP_MARK.encode()) if c.strip()]
        return [parser.parsebytes(c.lstrip(b"\r\n")) for c in chunks]

    def stop(self):
        self.proc.stop()
        if self.dump_dir:
            shutil.rmtree(self.dump_dir, ignore_errors=True)


def smtp_source(sink: Sink, size: int, count: int) -> float:
    """Postfix's own client, 16 reused connections: the SMTP ceiling of this machine now."""
    before = sink.count()
    t0 = time.monotonic()
    subprocess.run(["smtp-source", "-d", "-s", "16", "-l", str(size), "-m", str(count), "-f", "bench@example.org",
                    "-t", "sink@example.test", f"127.0.0.1:{sink.port}"], check=True, capture_output=True,
                   timeout=600)
    elapsed = time.monotonic() - t0
    wait_for(lambda: sink.count() - before >= count, 10, 0.05, "smtp-sink to count smtp-source's messages")
    return count / elapsed


class UiLoad:
    """GETs of the dashboard and the campaign page at a fixed rate, open loop: latency counts
    from the moment a request was due, so a slow server cannot hide by delaying the next one.
    At most MAX_OUTSTANDING requests are in flight; a request due beyond that is not sent and
    counts as infinitely slow, so a saturated UI shows in p95 without piling load on it."""

    MAX_OUTSTANDING = 16

    def __init__(self, web: WebClient, paths: list[str], rate: float, max_seconds: float):
        self.web, self.paths, self.rate = web, paths, rate
        self.max_requests = int(rate * max_seconds)
        self.latencies, self.errors, self.by_path = [], [], {}
        self.skipped = 0
        self._slots = threading.BoundedSemaphore(self.MAX_OUTSTANDING)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._local = threading.local()

    def _session(self):
        import requests

        s = getattr(self._local, "s", None)
        if s is None:
            s = self._local.s = requests.Session()
            s.cookies.update(self.web.http.cookies)
        return s

    def _record(self, path: str, ms: float):
        self.latencies.append(ms)
        self.by_path.setdefault(path, []).append(ms)

    def _one(self, path: str, due: float):
        try:
            # A fresh connection each time: a kept-alive one that gunicorn closed in the
            # meantime would fail for reasons that are not the page's.
            r = self._session().get(self.web.base + path, timeout=10, headers={"Connection": "close"})
            if r.status_code != 200:
                self.errors.append(f"{path}: HTTP {r.status_code}")
        except Exception as exc:  # noqa: BLE001 - any failure is a result to report
            self.errors.append(f"{path}: {exc}")
        finally:
            self._slots.release()
        self._record(path, (time.monotonic() - due) * 1000)

    def _run(self):
        start = time.monotonic()
        with ThreadPoolExecutor(self.MAX_OUTSTANDING) as pool:
            for i in range(self.max_requests):
                due = start + i / self.rate
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
                path = self.paths[i % len(self.paths)]
                if not self._slots.acquire(blocking=False):
                    self.skipped += 1
                    self._record(path, float("inf"))
                    continue
                pool.submit(self._one, path, due)

    def idle_latency(self, rounds: int = 10) -> dict:
        """Each page fetched `rounds` times in a row before the send: warms the workers (first
        renders compile templates) and gives the latency with nothing else going on."""
        out = {}
        for path in self.paths:
            times = []
            for _ in range(rounds):
                t0 = time.monotonic()
                self._session().get(self.web.base + path, timeout=10, headers={"Connection": "close"})
                times.append((time.monotonic() - t0) * 1000)
            out[path] = percentile(times[rounds // 2:], 50)
        return out

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()


class Profiler:
    """py-spy sampling the given processes (non-blocking) until stopped; raw collapsed stacks."""

    def __init__(self, outdir: Path, targets: dict[str, int]):
        self.procs = {}
        spy = VENV_BIN / "py-spy"
        if not spy.exists():
            raise BenchError("py-spy is missing: pip install -e '.[bench]' (scripts/bench does it)")
        for name, pid in targets.items():
            out = outdir / f"profile-{name}.txt"
            self.procs[name] = (out, subprocess.Popen(
                [str(spy), "record", "--pid", str(pid), "--rate", "200", "--nonblocking", "--gil", "--format", "raw",
                 "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> dict[str, Path]:
        for _, p in self.procs.values():
            p.send_signal(signal.SIGINT)
        for _, p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        return {name: out for name, (out, _) in self.procs.items() if out.exists()}


_FRAME = re.compile(r"^(.*?) \((.*?)(?::\d+)?\)$")


def summarise_profile(path: Path, top: int = 15) -> dict:
    """Self and inclusive share per function from py-spy's collapsed stacks."""
    own, incl, total = {}, {}, 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        n = int(n)
        total += n
        frames = []
        for f in stack.split(";"):
            m = _FRAME.match(f)
            name = f"{m.group(1)} ({Path(m.group(2)).name})" if m else f
            frames.append(name)
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + n
        for name in set(frames):
            incl[name] = incl.get(name, 0) + n
    pct = lambda d: [(k, round(100 * v / total, 1)) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]  # noqa: E731
    return {"samples": total, "self": pct(own), "inclusive": pct(incl)}


class Run:
    """One benchmark run: its world, its processes, its campaigns."""

    def __init__(self, args, run_id: str):
        self.args, self.q = args, queries()
        self.logdir = ROOT / "var" / run_id
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.procs: list = []
        from psycopg.rows import dict_row

        self.db = Database(os.environ["DATABASE_URL"], row_factory=dict_row)
        self.sampler_db = Database(os.environ["DATABASE_URL"])

    def close(self):
        for p in reversed(self.procs):
            p.stop()
        self.db.close()
        self.sampler_db.close()

    def keep(self, proc):
        self.procs.append(proc)
        return proc

    # --- data ---
    def seed(self, first: int, last: int):
        t0 = time.monotonic()
        self.db.execute(self.q.bench_seed_contacts, {"first": first, "last": last})
        self.db.execute("ANALYZE contacts")
        log(f"seeded contacts {first}..{last} in {time.monotonic() - t0:.1f} s")

    def make_list(self, name: str, n: int, sample_among: int | None = None) -> int:
        list_id = self.db.execute(self.q.bench_list_create, {"name": name}).fetchone()["id"]
        if sample_among:
            self.db.execute(self.q.bench_list_fill_sample, {"list_id": list_id, "n": n, "among": sample_among})
        else:
            self.db.execute(self.q.bench_list_fill, {"list_id": list_id, "n": n})
        self.db.execute("ANALYZE list_members")
        return list_id

    def make_campaign(self, web: WebClient, name: str, list_id: int) -> int:
        r = web.post_form("/campaigns/new", {
            "name": name, "from_name": "Example Team", "from_email": "news@example.org",
            "reply_to": "replies@example.org", "subject": SUBJECT, "body_html": BODY, "list_id": list_id,
            "max_attempts": 3}, allow_redirects=False)
        if r.status_code != 302:
            raise BenchError(f"the campaign form was refused ({r.status_code}): {r.text[:500]}")
        return self.db.execute(self.q.bench_campaign_by_name, {"name": name}).fetchone()["id"]

    def message_size(self, list_id: int) -> int:
        """Bytes of one real message of this campaign, built by the app's own code."""
        from app.mime import Skeleton
        from app.render import compile_campaign, contact_context
        from app.tokens import unsubscribe_url

        row = self.db.execute("SELECT c.id AS contact_id, c.* FROM contacts c JOIN list_members m "
                              "ON m.contact_id = c.id WHERE m.list_id = %s LIMIT 1", (list_id,)).fetchone()
        campaign = {"id": 1, "subject": SUBJECT, "body_html": BODY, "from_name": "Example Team",
                    "from_email": "news@example.org", "reply_to": "replies@example.org"}
        url = unsubscribe_url(row["id"], 1)
        r = compile_campaign(campaign).render({"contact": contact_context(row), "data": {},
                                              "campaign": {"id": 1, "name": "x"}, "unsubscribe_url": url})
        sk = Skeleton.build(campaign, [])
        return len(sk.build_message(to_name=row["name"], to_email=row["email"], subject=r.subject, html=r.html,
                                    text=r.text, message_id=sk.message_id(1), unsubscribe_url=url))

    # --- one campaign, end to end ---
    def send(self, web: WebClient, sink: Sink, list_id: int, label: str, recipients: int,
             measure_ui: bool = False, profile: bool = False) -> dict:
        a = self.args
        env = {"SMTP_URL": f"smtp://127.0.0.1:{sink.port}?timeout=30"}
        if a.prepare_batch:
            env["PREPARE_BATCH"] = str(a.prepare_batch)
        with ExitStack() as running:  # whatever happens, everything started here stops here
            workers = start_workers(self.logdir, a.processes, a.threads, env, name=f"workers-{label}")
            running.callback(workers.stop)
            kids = worker_children(workers, a.processes)
            cid = self.make_campaign(web, f"bench {label}", list_id)
            groups = {
                "workers (dramatiq)": workers.tree,
                "web (gunicorn)": self.web_proc.tree,
                "scheduler": self.scheduler.tree,
                "RabbitMQ (beam.smp, shared)": lambda: pids_named("beam.smp"),
                "PostgreSQL (bench backends)": lambda: [r[0] for r in self.sampler_db.read(self.q.bench_backends)],
                "smtp-sink": sink.proc.tree,
            }
            sampler = Sampler(groups).start()
            running.callback(sampler.stop)
            base, first, stop_watch = sink.count(), {}, threading.Event()
            running.callback(stop_watch.set)

            def watch_first():
                while not stop_watch.is_set():
                    if sink.count() > base:
                        first["t"] = time.monotonic()
                        return
                    time.sleep(0.002)

            threading.Thread(target=watch_first, daemon=True).start()
            timeout = max(120.0, recipients / 200)
            ui = UiLoad(web, ["/", f"/campaigns/{cid}"], a.ui_rate, timeout) if measure_ui and a.ui_rate else None
            spy = Profiler(self.logdir, {**{f"worker{i}": k for i, k in enumerate(kids)},
                                         **{f"web{i}": k for i, k in enumerate(descendants(self.web_proc.pid))}}
                           ) if profile else None
            profiles = {}
            if spy:
                running.callback(lambda: profiles.update(spy.stop()))
            idle_ms = ui.idle_latency() if ui else {}
            access = self.logdir / ACCESS_LOG
            log_offset = access.stat().st_size if access.exists() else 0
            t0 = time.monotonic()
            r = web.post_form(f"/campaigns/{cid}/send", {})
            t_post = time.monotonic()
            if r.status_code != 200 or f"Sending to {recipients} recipients" not in r.text:
                raise BenchError(f"Send did not start {recipients} deliveries: HTTP {r.status_code}, "
                                 f"{re.findall(r'(?:Sending|Not sent|already)[^<]*', r.text)[:2]}")
            if ui:
                ui.start()
                running.callback(ui.stop)

            def done():
                status = self.db.read(self.q.bench_status, {"id": cid})[0]["status"]
                if status in ("stopped", "failed", "paused"):
                    raise BenchError(f"campaign {cid} became {status}")
                if not workers.alive():
                    raise BenchError(f"the workers exited:\n{workers.tail()}")
                return status == "completed"

            try:
                wait_for(done, timeout, 0.02, f"campaign {cid} to complete")
            except BenchError:
                log(f"outcomes so far: {self.outcomes(cid)}; sink {sink.count() - base}")
                raise
            t1 = time.monotonic()
            sampler.stop()
            peak_rss = {f"pid {k}": (status_kb(k, "VmHWM") or 0) / 1024 for k in kids}
        time.sleep(0.2)
        outcomes = self.outcomes(cid)
        sent = outcomes.get("sent", 0)
        journal = self.db.read(self.q.bench_journal_sent, {"id": cid})[0]
        received = sink.count() - base
        result = {
            "campaign_id": cid, "recipients": recipients, "outcomes": outcomes, "sent": sent,
            "sink_received": received, "journal_sent": journal["n"],
            "elapsed_s": t1 - t0, "send_request_s": t_post - t0,
            "emails_per_s": sent / (t1 - t0),
            "first_email_s": first["t"] - t0 if "t" in first else None,
            "worker_peak_rss_mb": peak_rss,
            "cpu_s": sampler.cpu_by_group(),
            "worker_peak_rss_sampled_mb": {f"{g} pid {p}": kb / 1024 for (g, p), kb in sampler.peak_rss.items()
                                           if g.startswith("workers")},
        }
        if ui:
            result["ui"] = {"requests": len(ui.latencies), "errors": ui.errors[:10], "error_count": len(ui.errors),
                            "skipped_saturated": ui.skipped,
                            "p50_ms": percentile(ui.latencies, 50), "p95_ms": percentile(ui.latencies, 95),
                            "max_ms": max(ui.latencies, default=float("nan")),
                            "p95_ms_by_page": {p: percentile(v, 95) for p, v in ui.by_path.items()},
                            "server_p95_ms": percentile(server_times_ms(self.logdir, log_offset, set(ui.paths)), 95),
                            "idle_p50_ms_by_page": idle_ms}
        if profiles:
            result["profiles"] = {n: {"file": str(p), **summarise_profile(p)} for n, p in profiles.items()}
        self.check_honest(result)
        return result

    def outcomes(self, cid: int) -> dict:
        return {r["status"]: r["n"] for r in self.db.read(self.q.bench_outcomes, {"id": cid})}

    @staticmethod
    def check_honest(r: dict):
        problems = []
        if r["sent"] != r["recipients"]:
            problems.append(f"{r['sent']} sent of {r['recipients']} recipients ({r['outcomes']})")
        if r["sink_received"] != r["sent"]:
            problems.append(f"the sink received {r['sink_received']} messages but {r['sent']} deliveries are sent")
        if r["journal_sent"] != r["sent"]:
            problems.append(f"the journal has {r['journal_sent']} delivery.sent events for {r['sent']} sent")
        if problems:
            raise BenchError("dishonest run: " + "; ".join(problems))

    def check_personalised(self, sink: Sink, cid: int) -> int:
        rows = {r["email"].lower(): r for r in self.db.read(self.q.bench_sent_rows, {"id": cid})}
        messages = sink.messages()
        if len(messages) != len(rows):
            raise BenchError(f"the dumping sink holds {len(messages)} messages for {len(rows)} sent deliveries")
        seen = set()
        for m in messages:
            rcpt = m["X-Rcpt-Args"].strip("<> ").lower()
            row = rows.get(rcpt)
            if row is None:
                raise BenchError(f"a message reached {rcpt}, who has no sent delivery")
            if rcpt in seen:
                raise BenchError(f"{rcpt} received two messages")
            seen.add(rcpt)
            subject, in_html, in_text = expected(row)
            html = m.get_body(("html",)).get_content()
            text = m.get_body(("plain",)).get_content()
            wrong = ([f"subject {m['Subject']!r} != {subject!r}"] if m["Subject"] != subject else []) + \
                [f"html lacks {s!r}" for s in in_html if s not in html] + \
                [f"text lacks {s!r}" for s in in_text if s not in text]
            if m["To"].addresses[0].addr_spec.lower() != rcpt:
                wrong.append(f"To {m['To']} != envelope {rcpt}")
            if m["Message-ID"] != row["message_id"]:
                wrong.append(f"Message-ID {m['Message-ID']} != recorded {row['message_id']}")
            if not (m["List-Unsubscribe"] or "").startswith("<http"):
                wrong.append("no List-Unsubscribe link")
            if wrong:
                raise BenchError(f"message to {rcpt} is not personalised correctly: {'; '.join(wrong)}")
        return len(messages)

    def materialise(self, web: WebClient, total: int) -> tuple[float, float]:
        """Seconds for `campaigns.start` (every delivery written, journal, enqueue), and until
        its first page was committed and enqueued (the campaign's `campaign.running` event)."""
        existing = self.db.execute("SELECT count(*) AS n FROM contacts").fetchone()["n"]
        if existing < total:
            self.seed(existing + 1, total)
        list_id = self.make_list(f"bench-{total}", total)
        cid = self.make_campaign(web, f"bench materialise {total}", list_id)
        from app.services import campaign

        t0_db = self.db.execute(self.q.bench_clock).fetchone()["t"]
        t0 = time.monotonic()
        result = campaign.start(cid, source="bench")
        elapsed = time.monotonic() - t0
        if result.get("deliveries") != total:
            raise BenchError(f"materialised {result} instead of {total} deliveries")
        running = self.db.execute(self.q.bench_running_at, {"id": cid}).fetchone()["at"]
        return elapsed, (running - t0_db).total_seconds()


def parse(argv):
    p = argparse.ArgumentParser(prog="scripts/bench send", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipients", type=int, default=100_000, help="size of the measured campaign (100000)")
    p.add_argument("--flat", type=int, default=10_000,
                   help="size of the small campaign for the RSS flatness comparison (10000; 0 skips)")
    p.add_argument("--sample", type=int, default=300, help="recipients of the personalisation check (300)")
    p.add_argument("--materialise", type=int, default=1_000_000,
                   help="deliveries to materialise in the start timing (1000000; 0 skips)")
    p.add_argument("--processes", type=int, default=int(os.environ.get("WORKER_PROCESSES") or 2))
    p.add_argument("--threads", type=int, default=int(os.environ.get("WORKER_THREADS") or 8))
    p.add_argument("--prepare-batch", type=int, default=int(os.environ.get("PREPARE_BATCH") or 0),
                   help="PREPARE_BATCH for the workers (default: the app's)")
    p.add_argument("--ui-rate", type=float, default=20.0,
                   help="UI requests per second during the send (20; 0 measures the send without UI load)")
    p.add_argument("--profile", action="store_true",
                   help="sample the workers and gunicorn with py-spy during the measured send")
    return p.parse_args(argv)


def main(argv) -> int:
    args = parse(argv)
    figures, details = {}, {"args": vars(args)}
    with bench_world("send") as run_id:
        run = Run(args, run_id)
        try:
            run.seed(1, max(args.recipients, args.flat))
            main_list = run.make_list("bench-main", args.recipients)
            flat_list = run.make_list("bench-flat", args.flat) if args.flat else None
            sample_list = run.make_list("bench-sample", args.sample, sample_among=args.recipients)
            user, password = make_manager()
            web_proc, base_url = start_web(run.logdir)
            run.web_proc = run.keep(web_proc)
            run.scheduler = run.keep(Proc("scheduler", [str(VENV_BIN / "python"), "-m", "consumers.scheduler"],
                                          logdir=run.logdir))
            web = WebClient(base_url, user, password)
            sink = run.keep(Sink(run.logdir, "smtp-sink"))

            size = run.message_size(main_list)
            log(f"baseline: smtp-source -d -s 16, {size}-byte messages")
            baseline = smtp_source(sink, size, max(10_000, min(args.recipients, 50_000)))
            details["message_bytes"] = size
            details["smtp_source_per_s"] = baseline

            if flat_list:
                log(f"campaign of {args.flat} (RSS flatness, warm-up)")
                details["flat"] = run.send(web, sink, flat_list, "flat", args.flat)
            log(f"measured campaign of {args.recipients}")
            main_r = details["main"] = run.send(web, sink, main_list, "main", args.recipients, measure_ui=True,
                                                profile=args.profile)

            log(f"personalisation check on {args.sample} recipients (dumping sink)")
            dump_sink = Sink(run.logdir, "smtp-sink-dump", dump_dir=Path("/dev/shm") / run_id)
            try:
                sample_r = run.send(web, dump_sink, sample_list, "sample", args.sample)
                details["sample_checked"] = run.check_personalised(dump_sink, sample_r["campaign_id"])
            finally:
                dump_sink.stop()

            if args.materialise:
                log(f"materialising {args.materialise} deliveries")
                details["materialise_s"], details["materialise_first_page_s"] = run.materialise(web, args.materialise)
        finally:
            details["postgres_restarts"] = run.db.restarts
            run.close()

    flat_peak = max(details["flat"]["worker_peak_rss_mb"].values()) if args.flat else None
    main_peak = max(main_r["worker_peak_rss_mb"].values())
    ui = main_r.get("ui") or {"requests": 0, "p50_ms": float("nan"), "p95_ms": float("nan"), "error_count": 0,
                              "skipped_saturated": 0}
    sent = main_r["sent"]
    cpu = {g: s * 1000 / sent for g, s in main_r["cpu_s"].items()}
    figures = {
        "emails_per_s": round(main_r["emails_per_s"], 1),
        "smtp_source_per_s": round(baseline, 1),
        "ratio": round(main_r["emails_per_s"] / baseline, 3),
        "first_email_s": None if main_r["first_email_s"] is None else round(main_r["first_email_s"], 3),
        "materialise_1m_s": round(details["materialise_s"], 2) if args.materialise else None,
        "worker_peak_rss_mb": round(main_peak, 1),
        "ui_p95_ms": round(ui["p95_ms"], 1),
        "sent": sent,
        "sink_received": main_r["sink_received"],
    }
    rows = [
        ("emails/s, Send to completed", f"{figures['emails_per_s']:.0f}", ">= 5000"),
        ("smtp-source -d -s 16 (same sink)", f"{baseline:.0f}", f"{size}-byte messages"),
        ("ratio to smtp-source", f"{figures['ratio']:.2f}", "listmonk ~0.5 of 20k"),
        ("Send to first email at the sink", f"{figures['first_email_s']} s", "<= 1 s"),
        ("Send request (materialise + enqueue)", f"{main_r['send_request_s']:.2f} s", ""),
        (f"materialise {args.materialise} (campaigns.start)",
         f"{figures['materialise_1m_s']} s" if args.materialise else "skipped", "<= 5 s"),
        ("  of which until its first page was sendable", f"{details['materialise_first_page_s']:.2f} s"
         if args.materialise else "skipped", "the rest is written while the first page sends"),
        (f"worker peak RSS at {args.recipients}", f"{main_peak:.1f} MB", "<= 150 MB"),
    ]
    if flat_peak:
        rows.append((f"worker peak RSS at {args.flat}", f"{flat_peak:.1f} MB",
                     f"growth {100 * (main_peak / flat_peak - 1):+.1f}% (<= 10%)"))
        rows.append((f"emails/s at {args.flat}", f"{details['flat']['emails_per_s']:.0f}", "warm-up campaign"))
    rows.append((f"UI p95 at {args.ui_rate:g} req/s ({ui['requests']} req)", f"{ui['p95_ms']:.1f} ms",
                 f"<= 50 ms; p50 {ui['p50_ms']:.1f}, errors {ui['error_count']}, "
                 f"not sent (16 in flight) {ui['skipped_saturated']}"))
    if main_r.get("ui"):
        rows.append(("  p95 inside gunicorn (access log)", f"{ui['server_p95_ms']:.1f} ms",
                     "the rest of the latency is waiting: for a core, the connection, the load client"))
        rows += [(f"  p95 {page} (idle p50)", f"{ui['p95_ms_by_page'].get(page, float('nan')):.1f} ms",
                  f"{ui['idle_p50_ms_by_page'].get(page, float('nan')):.1f} ms before the send")
                 for page in ui["p95_ms_by_page"]]
    rows += [(f"CPU s / 1000 emails: {g}", f"{v:.3f}", "") for g, v in cpu.items()]
    rows += [("sent / sink received / journal", f"{sent} / {main_r['sink_received']} / {main_r['journal_sent']}",
              "must be equal"),
             ("personalisation check", f"{details['sample_checked']} messages", "all correct")]
    if details["postgres_restarts"]:
        rows.append(("PostgreSQL connection lost (restarts)", details["postgres_restarts"],
                     "a neighbour restarted PostgreSQL: figures disturbed"))
    print_table(rows)
    if args.profile:
        for name, prof in main_r.get("profiles", {}).items():
            print(f"\nprofile {name} ({prof['samples']} samples, {prof['file']}): self time")
            for fn, share in prof["self"]:
                print(f"  {share:5.1f}%  {fn}")
    details["cpu_per_1000"] = cpu
    path = write_results("send", figures, details)
    log(f"wrote {path.relative_to(ROOT)}")
    emit(figures)
    return 0
