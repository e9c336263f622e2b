"""`scripts/bench import`: a generated CSV (email, name, 5 attributes, tags; 1% bad rows,
1% duplicate addresses) imported end to end through the real `imports` actor, against the raw
COPY of the same file into a bare table in the same run and database.

Phases, on real parts (PostgreSQL, RabbitMQ, a `dramatiq consumers.worker` process):
1. the file is generated (deterministic, so every run imports the same rows);
2. raw COPY of the file into a table of text columns without indexes (the floor: PostgreSQL
   parsing CSV and writing rows, nothing checked);
3. the upload is stored as the web page stores it (timed apart: the manager waits for it
   before the mapping page, not for the import);
4. the import: from the mapping being queued to the report, with the worker's peak RSS;
5. raw COPY again (the neighbours' load moves; the faster of the two COPYs is the baseline);
6. the floor under any import: the imported contacts, already clean, COPYed into a copy of
   the contacts table with its indexes (what storing the result costs, nothing checked);
7. honesty checks: the report's counts and the contacts table match what was generated.
"""
import argparse
import os
import re
import time
from pathlib import Path

from .common import (ROOT, BenchError, bench_world, emit, log, print_table, start_workers, status_kb, wait_for,
                     worker_children, write_results)

DOMAINS = [f"mail{i}.example{i % 7}.com" for i in range(997)] + ["gmail.com", "outlook.com", "yahoo.fr"]
CITIES = ["Oslo", "Paris", "Zürich", "São Paulo", "Kraków", "New York", "Tromsø"]
TAGS = ["news;vip", "news", "x;news;b", "", "vip", "a;b;c", "news;b", "b", "vip;x", "a"]
BAD = ["not-an-address", "", "two@@example.com", "person@", "age", "date"]  # every 100th row, in turn
HEADER = "email,name,city,company,age,signup,vip,tags\n"
COLUMNS = [("email", "", "text"), ("name", "", "text"), ("attribute", "city", "text"),
           ("attribute", "company", "text"), ("attribute", "age", "number"), ("attribute", "signup", "date"),
           ("attribute", "vip", "boolean"), ("tags", "", "text")]


def parse(argv):
    p = argparse.ArgumentParser(prog="scripts/bench import", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows in the generated file (default 1,000,000)")
    p.add_argument("--list", action="store_true", help="also add every address to a list (slower: two foreign keys "
                                                       "are checked per membership)")
    return p.parse_args(argv)


def email(i: int) -> str:
    return f"person.{i}@{DOMAINS[i % len(DOMAINS)]}"


def generate(path: Path, rows: int) -> dict:
    """The benchmark file and what a correct import makes of it."""
    bad = duplicates = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        batch = []
        for i in range(rows):
            address, age, signup = email(i), str(18 + i % 70), f"20{10 + i % 15}-{1 + i % 12:02d}-{1 + i % 28:02d}"
            if i % 100 == 37:  # 1% bad rows, a different fault in turn
                fault = BAD[(i // 100) % len(BAD)]
                bad += 1
                if fault == "age":
                    age = "forty"
                elif fault == "date":
                    signup = "2024-13-45"
                else:
                    address = fault
            elif i % 100 == 73 and i >= 50:  # 1% duplicates of a good row 50 earlier, some in capitals
                address = email(i - 50).upper() if i % 200 == 73 else email(i - 50)
                duplicates += 1
            batch.append(f"{address},Person {i},{CITIES[i % 7]},Company {i % 5000},{age},{signup},"
                         f"{'yes' if i % 3 else 'no'},{TAGS[i % 10]}\n")
            if len(batch) == 10_000:
                f.write("".join(batch))
                batch.clear()
        f.write("".join(batch))
    return {"rows": rows, "rejected": bad, "duplicates": duplicates, "contacts": rows - bad - duplicates}


def raw_copy(conn, path: Path) -> float:
    """COPY the file as it is into a bare table: the floor any import stands on."""
    conn.execute("DROP TABLE IF EXISTS bench_bare")
    conn.execute("CREATE TABLE bench_bare (email text, name text, city text, company text, age text, signup text, "
                 "vip text, tags text)")
    elapsed = timed_copy(conn, "COPY bench_bare FROM STDIN (FORMAT csv, HEADER true)", path)
    conn.execute("DROP TABLE bench_bare")
    return elapsed


def timed_copy(conn, copy_sql: str, path: Path) -> float:
    """Seconds to stream a file into COPY ... FROM STDIN, a megabyte at a time."""
    t0 = time.perf_counter()
    with conn.cursor() as cur, cur.copy(copy_sql) as copy, open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            copy.write(chunk)
    return time.perf_counter() - t0


def indexed_copy(conn, logdir: Path) -> float:
    """The imported contacts COPYed, clean, into a table like contacts (same indexes)."""
    clean = logdir / "clean.copy"
    with open(clean, "wb") as f, conn.cursor() as cur, \
            cur.copy("COPY (SELECT email, name, status, attributes, tags FROM contacts ORDER BY id) TO STDOUT") as out:
        for data in out:
            f.write(data)
    conn.execute("CREATE TABLE bench_contacts (LIKE contacts INCLUDING ALL)")
    elapsed = timed_copy(conn, "COPY bench_contacts (email, name, status, attributes, tags) FROM STDIN", clean)
    conn.execute("DROP TABLE bench_contacts")
    clean.unlink()
    return elapsed


def main(argv) -> int:
    args = parse(argv)
    if args.rows < 1000:
        raise BenchError("--rows must be at least 1000")
    logdir = ROOT / "var" / "bench" / f"import-{os.getpid()}"
    logdir.mkdir(parents=True, exist_ok=True)
    path = logdir / f"contacts-{args.rows}.csv"
    log(f"generating {args.rows:,} rows into {path.relative_to(ROOT)}")
    t0 = time.perf_counter()
    expected = generate(path, args.rows)
    size = path.stat().st_size
    details = {"args": vars(args), "file_bytes": size, "generate_s": time.perf_counter() - t0, "expected": expected}
    try:
        with bench_world("import"):
            import psycopg

            from app.config import Config
            from app.services import importer
            from app.services.import_rows import Mapping

            with psycopg.connect(Config.DATABASE_URL, autocommit=True) as conn:
                log("raw COPY of the file into a bare table")
                copies = [raw_copy(conn, path)]
                workers = start_workers(logdir, processes=1, threads=4, env={})
                try:
                    (child,) = worker_children(workers, 1)
                    rss_before = (status_kb(child, "VmRSS") or 0) / 1024
                    log("storing the upload as the import page does")
                    t0 = time.perf_counter()
                    upload = importer.Upload(str(path), size, path.name)
                    import_id = importer.create(upload)
                    details["upload_s"] = time.perf_counter() - t0
                    lists = []
                    if args.list:
                        lists = [conn.execute("INSERT INTO lists (name) VALUES ('bench') RETURNING id").fetchone()[0]]
                    imp = conn.execute("SELECT encoding, delimiter FROM imports WHERE id = %s", (import_id,)).fetchone()
                    mapping = Mapping(columns=[{"role": r, "key": k, "type": t} for r, k, t in COLUMNS],
                                      lists=lists, tag_separator=";")
                    log(f"importing through the imports queue (import {import_id})")
                    t0 = time.perf_counter()
                    importer.queue(import_id, mapping, imp[0], imp[1], True)
                    phases = {}

                    def finished():
                        if not workers.alive():
                            raise BenchError(f"the worker exited:\n{workers.tail()}")
                        status, phase = conn.execute("SELECT status, phase FROM imports WHERE id = %s",
                                                     (import_id,)).fetchone()
                        phases.setdefault(phase, time.perf_counter() - t0)
                        return status if status in ("done", "failed") else None

                    status = wait_for(finished, 3600, 0.05, "the import")
                    import_s = time.perf_counter() - t0
                    peak_rss_mb = (status_kb(child, "VmHWM") or 0) / 1024
                finally:
                    workers.stop()
                report = conn.execute("SELECT * FROM imports WHERE id = %s", (import_id,)).fetchone()
                if status != "done":
                    raise BenchError(f"the import failed: {report}")
                log("raw COPY again")
                copies.append(raw_copy(conn, path))
                log("COPY of the imported contacts into a copy of the contacts table, indexes and all")
                floor_s = indexed_copy(conn, logdir)
                contacts = conn.execute("SELECT count(*) FROM contacts").fetchone()[0]
                columns = [d.name for d in conn.execute("SELECT * FROM imports LIMIT 0").description]
                report = dict(zip(columns, report))
    finally:
        path.unlink(missing_ok=True)

    got = {"rows": report["rows_read"], "rejected": report["rejected"], "duplicates": report["duplicates"],
           "contacts": contacts}
    if got != expected or report["inserted"] != expected["contacts"] or report["updated"] != expected["duplicates"]:
        raise BenchError(f"the import's counts are wrong: expected {expected}, got {got} and {report}")
    copy_s = min(copies)
    worker_log = workers.log_path.read_text(errors="replace")
    steps = re.findall(r"import \d+ merged: (.*)", worker_log) + re.findall(r"(rows read[^\n]* in [\d.]+ s)", worker_log)
    reading_s = phases.get("merging", import_s) - phases.get("reading", 0.0)
    figures = {"rows": args.rows, "import_s": round(import_s, 3), "copy_s": round(copy_s, 3),
               "ratio": round(import_s / copy_s, 3), "rejected": report["rejected"], "peak_rss_mb": round(peak_rss_mb, 1)}
    details.update(copy_runs_s=copies, upload_s=details["upload_s"], phases_s=phases, reading_s=reading_s,
                   indexed_copy_s=floor_s, worker_steps=steps,
                   merging_s=import_s - phases.get("merging", import_s), worker_rss_before_mb=rss_before, report=report)
    print_table([
        ("file", f"{args.rows:,} rows, {size / 2**20:.0f} MB", f"{expected['rejected']:,} bad rows, "
                                                                  f"{expected['duplicates']:,} duplicates"),
        ("raw COPY into a bare table", f"{copy_s:.2f} s", "best of " + ", ".join(f"{c:.2f}" for c in copies)),
        ("upload stored (before mapping)", f"{details['upload_s']:.2f} s", "not part of the import"),
        ("import, queued to report", f"{import_s:.2f} s", "goal <= 1.5 x raw COPY"),
        ("  reading and inserting", f"{reading_s:.2f} s", "Python csv + checks in a thread, COPY + insert per chunk"),
        ("  applying, lists, indexes", f"{details['merging_s']:.2f} s",
         "rows meeting a contact, list joins, deferred index builds" + (", with a list" if args.list else "")),
        ("ratio import / COPY", f"{import_s / copy_s:.2f}", "goal <= 1.5"),
        ("clean rows COPYed into contacts' twin", f"{floor_s:.2f} s",
         f"{floor_s / copy_s:.1f} x raw COPY: its indexes, the floor of any import"),
        ("worker peak RSS", f"{peak_rss_mb:.0f} MB", f"goal < 300 MB (idle: {rss_before:.0f} MB)"),
        ("report", f"{report['inserted']:,} new, {report['rejected']:,} rejected, {report['duplicates']:,} dup",
         "checked against the generated file"),
    ])
    if steps:
        print("worker: " + "; ".join(steps))
    out = write_results("import", figures, details)
    log(f"wrote {out.relative_to(ROOT)}")
    emit(figures)
    return 0
