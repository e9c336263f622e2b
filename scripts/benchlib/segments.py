"""`scripts/bench segments`: a builder-made segment function against the hand-written SELECT.

1. A throwaway database (common.bench_world, no RabbitMQ needed) gets --contacts contacts (1,000,000) with
   realistic attributes (country, city, age and plan as CSV imports store them: strings;
   a JSON number score) and tags, through COPY, with the contacts indexes of the migrations
   dropped during the load and built again after it, then VACUUM ANALYZE.
2. The rule builder's own service saves a 4-condition segment with one OR group:
   tags contains "newsletter" AND (country = NO OR country = SE) AND age > 30.
3. Its function (`SELECT contact_id FROM segments.segment_..._v1()`) and the equivalent
   hand-written SELECT (same meaning: a non-numeric age does not match rather than failing)
   are run alternately, --runs times each after a warm-up, every row fetched; the medians are
   compared. Both must return the same ids. The quick `::int` SELECT, which fails on one bad
   age, is timed alongside for reference.
Goal: ratio <= 1.2 and the function under one second.
"""
import argparse
import json
import random
import statistics
import time
from datetime import date, datetime, timedelta, timezone

from .common import ROOT, BenchError, bench_world, emit, log, print_table, queries, write_results

FIRST = ("Anna Ole Ingrid Lars Sofia Erik Maja Jonas Emma Lukas Chloé Hugo Zoë Łukasz Aino Mikko Sara "
         "Johan Freja Noah Ida Oscar Alice Liam Nora Elias").split()
LAST = ("Hansen Johansen Olsen Larsen Andersson Karlsson Nilsson Jensen Nielsen Virtanen Korhonen Müller "
        "Schmidt Martin Bernard Dubois Smith Jones Brown Taylor Nowak Kowalski").split()
COUNTRIES = [("NO", ("Oslo", "Bergen", "Trondheim", "Stavanger"), 18), ("SE", ("Stockholm", "Göteborg", "Malmö"), 18),
             ("DK", ("København", "Aarhus"), 10), ("FI", ("Helsinki", "Tampere"), 8),
             ("DE", ("Berlin", "München", "Hamburg"), 16), ("FR", ("Paris", "Lyon"), 12),
             ("GB", ("London", "Leeds"), 10), ("US", ("New York", "Austin"), 8)]
TAGS = [("newsletter", 0.55), ("customer", 0.3), ("trial", 0.15), ("jobs", 0.2), ("events", 0.1), ("vip", 0.04),
        ("beta", 0.03)]
PLANS = (("free", 60), ("pro", 30), ("team", 10))
DOMAINS = ("example.com", "example.org", "mail.example", "post.example", "inbox.example")
COUNTRY = {"type": "condition", "field": "attribute", "key": "country", "attr_type": "text", "op": "equals"}
RULE = {"type": "group", "op": "and", "children": [
    {"type": "condition", "field": "tags", "op": "contains", "value": "newsletter"},
    {"type": "group", "op": "or", "children": [{**COUNTRY, "value": "NO"}, {**COUNTRY, "value": "SE"}]},
    {"type": "condition", "field": "attribute", "key": "age", "attr_type": "number", "op": "gt", "value": "30"}]}


def rows(n: int, seed: int = 42):
    """COPY text lines for n contacts, reproducible from the seed."""
    rnd = random.Random(seed)
    countries = [c for c, _, w in COUNTRIES for _ in range(w)]
    cities = {c: cs for c, cs, _ in COUNTRIES}
    plans = [p for p, w in PLANS for _ in range(w)]
    now = datetime.now(timezone.utc)
    for i in range(1, n + 1):
        country = rnd.choice(countries)
        created = now - timedelta(seconds=rnd.randrange(3 * 365 * 86400))
        attrs = {"country": country, "city": rnd.choice(cities[country]), "age": str(rnd.randint(18, 80)),
                 "plan": rnd.choice(plans)}
        attrs.update(signup=(date(2019, 1, 1) + timedelta(days=rnd.randrange(2000))).isoformat(),
                     newsletter=rnd.choice(("yes", "no")), score=rnd.randint(0, 1000))
        tags = [t for t, p in TAGS if rnd.random() < p]
        r = rnd.random()
        status = "subscribed" if r < 0.95 else "unsubscribed" if r < 0.98 else "bounced"
        line = "\t".join((f"user{i}@{DOMAINS[i % len(DOMAINS)]}", f"{rnd.choice(FIRST)} {rnd.choice(LAST)}", status,
                          json.dumps(attrs, ensure_ascii=False), "{" + ",".join(tags) + "}",
                          created.isoformat(), created.isoformat()))
        yield line.replace("\\", "\\\\") + "\n"


def load(conn, q, n: int) -> float:
    from psycopg import sql

    t0 = time.perf_counter()
    indexes = conn.execute(q.segbench_contact_indexes).fetchall()
    for name, _ in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    with conn.cursor().copy(q.segbench_copy) as copy:
        chunk = []
        for line in rows(n):
            chunk.append(line)
            if len(chunk) == 20_000:
                copy.write("".join(chunk))
                chunk = []
        copy.write("".join(chunk))
    log(f"loaded {n} contacts in {time.perf_counter() - t0:.1f} s; building {len(indexes)} indexes")
    for _, ddl in indexes:
        conn.execute(ddl)
    conn.execute("VACUUM ANALYZE contacts")
    return time.perf_counter() - t0


def timed(conn, query, params=None) -> tuple[float, list]:
    t0 = time.perf_counter()
    ids = [r[0] for r in conn.execute(query, params).fetchall()]
    return time.perf_counter() - t0, ids


def parse(argv):
    p = argparse.ArgumentParser(prog="scripts/bench segments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contacts", type=int, default=1_000_000, help="contacts to generate (1000000)")
    p.add_argument("--runs", type=int, default=7, help="timed runs of each query after a warm-up (7)")
    return p.parse_args(argv)


def main(argv) -> int:
    args = parse(argv)
    if args.contacts < 1000 or args.runs < 1:
        raise BenchError("--contacts must be at least 1000 and --runs at least 1")
    details = {"args": vars(args), "rule": RULE}
    with bench_world("segments", broker=False):
        import psycopg
        from psycopg import sql

        from app.config import Config
        from app.services import segment

        q = queries()
        with psycopg.connect(Config.DATABASE_URL, autocommit=True) as conn:
            log(f"generating {args.contacts} contacts with COPY")
            details["load_s"] = load(conn, q, args.contacts)
            log("saving the segment through the rule builder's service")
            t0 = time.perf_counter()
            version = segment.create("Bench newsletter Nordics over 30", RULE)
            details["save_s"] = time.perf_counter() - t0
            details["source"] = version["source"]
            fn = sql.SQL("SELECT contact_id FROM segments.{}()").format(sql.Identifier(version["fn_name"]))
            details["plan_function"] = [r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + fn)]
            details["plan_select"] = [r[0] for r in conn.execute("EXPLAIN " + q.segbench_select)]

            timed(conn, fn)
            timed(conn, q.segbench_select)
            proc_times, select_times, naive_times = [], [], []
            for _ in range(args.runs):
                t, proc_ids = timed(conn, fn)
                proc_times.append(t)
                t, select_ids = timed(conn, q.segbench_select)
                select_times.append(t)
                t, naive_ids = timed(conn, q.segbench_select_naive)
                naive_times.append(t)
            if not sorted(proc_ids) == sorted(select_ids) == sorted(naive_ids):
                raise BenchError(f"the function returned {len(proc_ids)} ids and the SELECTs {len(select_ids)} and "
                                 f"{len(naive_ids)}: they must be the same set")
            eval_s, eval_ids = timed(conn, q.segbench_eval, {"fn": f"segments.{version['fn_name']}()"})
            if len(eval_ids) != len(proc_ids):
                raise BenchError("segment_eval returned another set than the function")
            t0 = time.perf_counter()
            estimate = segment.estimate(RULE)["estimate"]
            estimate_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            exact = segment.preview(RULE)["matched"]
            exact_s = time.perf_counter() - t0

    procedure_s, select_s = statistics.median(proc_times), statistics.median(select_times)
    naive_s = statistics.median(naive_times)
    figures = {"contacts": args.contacts, "matched": len(proc_ids), "procedure_s": round(procedure_s, 4),
               "select_s": round(select_s, 4), "ratio": round(procedure_s / select_s, 3)}
    details.update(procedure_runs_s=proc_times, select_runs_s=select_times, naive_select_runs_s=naive_times,
                   naive_select_s=naive_s, segment_eval_s=eval_s,
                   preview_estimate=estimate, preview_estimate_s=estimate_s, preview_exact=exact,
                   preview_exact_s=exact_s)
    print_table([
        ("contacts (COPY, indexes rebuilt)", f"{args.contacts}", f"loaded in {details['load_s']:.1f} s"),
        ("matched", f"{len(proc_ids)}", "tags ∋ newsletter AND country ∈ {NO, SE} AND age > 30"),
        (f"function {version['fn_name']}()", f"{procedure_s:.4f} s", f"median of {args.runs}; goal < 1 s"),
        ("hand-written SELECT, same meaning", f"{select_s:.4f} s", f"median of {args.runs}"),
        ("ratio function / SELECT", f"{figures['ratio']:.3f}", "goal <= 1.2"),
        ("quick SELECT with ::int (reference)", f"{naive_s:.4f} s",
         f"function / it: {procedure_s / naive_s:.3f}; fails on a non-numeric age"),
        ("segment_eval (as campaigns run it)", f"{eval_s:.4f} s", "security definer wrapper, one run"),
        ("preview: planner estimate", f"{estimate} in {estimate_s * 1000:.0f} ms", "shown first"),
        ("preview: exact count + first 20", f"{exact} in {exact_s:.3f} s", "read-only, as the reader role"),
        ("save (create + validate + record)", f"{details['save_s']:.3f} s", ""),
    ])
    print("\nplan of the function:\n  " + "\n  ".join(details["plan_function"]))
    path = write_results("segments", figures, details)
    log(f"wrote {path.relative_to(ROOT)}")
    emit(figures)
    return 0
