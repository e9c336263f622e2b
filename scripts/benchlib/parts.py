"""`scripts/bench parts`: CPU per email of each step of the send path, in one process.

The end-to-end figure (`scripts/bench send`) says how fast; this says where the time goes,
per email, with the app's own code and the `send` benchmark's campaign: rendering, the
unsubscribe token, MIME assembly, the dispatch payload through JSON, and SMTP over one
connection into smtp-sink (app.smtp against Postfix's smtp-source on one session as the
floor). No database or broker: it runs anywhere in a few seconds.
"""
import argparse
import json
import os
import secrets
import subprocess
import time

from .common import ROOT, emit, print_table, write_results


def per_email_us(fn, items) -> float:
    fn(items[0])  # warm: compiled regexes, cached serializers
    t0 = time.process_time()
    for item in items:
        fn(item)
    return (time.process_time() - t0) / len(items) * 1e6


def main(argv) -> int:
    p = argparse.ArgumentParser(prog="scripts/bench parts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--emails", type=int, default=5000, help="emails per step (5000)")
    args = p.parse_args(argv)
    os.environ.setdefault("SECRET_KEY", secrets.token_hex(24))

    from app.mime import Skeleton
    from app.render import compile_campaign, contact_context
    from app.smtp import SmtpServer
    from app.tokens import unsubscribe_url

    from .send import BODY, SUBJECT, Sink

    campaign = {"id": 1, "name": "parts", "subject": SUBJECT, "body_html": BODY, "from_name": "Example Team",
                "from_email": "news@example.org", "reply_to": "replies@example.org"}
    compiled, skeleton = compile_campaign(campaign), Skeleton.build(campaign, [])
    rows = [{"id": i, "contact_id": i, "email": f"bench{i}@example.test",
             "name": f"Zoë Łukasz {i}" if i % 10 == 0 else f"Person {i}",
             "attributes": {"city": "Oslo", "plan": "pro"}, "status": "subscribed", "tags": []}
            for i in range(1, args.emails + 1)]

    def context(row):
        return {"contact": contact_context(row), "data": {}, "campaign": {"id": 1, "name": "parts"},
                "unsubscribe_url": unsubscribe_url(row["contact_id"], 1)}

    rendered = {r["id"]: compiled.render(context(r)) for r in rows}
    emails = [{"d": r["id"], "to": r["email"], "n": r["name"], "s": rendered[r["id"]].subject,
               "h": rendered[r["id"]].html, "t": rendered[r["id"]].text, "u": unsubscribe_url(r["id"], 1)}
              for r in rows]
    messages = [skeleton.build_message(to_name=e["n"], to_email=e["to"], subject=e["s"], html=e["h"], text=e["t"],
                                       message_id=skeleton.message_id(e["d"]), unsubscribe_url=e["u"])
                for e in emails]
    batches = [emails[i:i + 100] for i in range(0, len(emails), 100)]
    payloads = [json.dumps({"args": [1, b]}) for b in batches]

    figures = {
        "render_us": per_email_us(lambda r: compiled.render(context(r)), rows),
        "unsubscribe_token_us": per_email_us(lambda r: unsubscribe_url(r["contact_id"], 1), rows),
        "mime_build_us": per_email_us(lambda e: skeleton.build_message(
            to_name=e["n"], to_email=e["to"], subject=e["s"], html=e["h"], text=e["t"],
            message_id=skeleton.message_id(e["d"]), unsubscribe_url=e["u"]), emails),
        "payload_json_us": per_email_us(lambda b: json.loads(json.dumps({"args": [1, b]})), batches) / 100,
        "payload_bytes_per_email": sum(map(len, payloads)) / len(emails),
        "message_bytes": sum(map(len, messages)) / len(messages),
    }

    logdir = ROOT / "var" / f"bench-parts-{os.getpid()}"
    sink = Sink(logdir, "smtp-sink")
    try:
        from app.smtp import SmtpConnection

        conn = SmtpConnection(SmtpServer.from_url(f"smtp://127.0.0.1:{sink.port}"))
        wall0, cpu0 = time.monotonic(), time.process_time()
        for e, m in zip(emails, messages):
            conn.send("news@example.org", e["to"], m)
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        conn.close()
        figures["app_smtp_cpu_us"] = cpu / len(messages) * 1e6
        figures["app_smtp_one_connection_per_s"] = len(messages) / wall
        t0 = time.monotonic()
        subprocess.run(["smtp-source", "-d", "-s", "1", "-l", str(int(figures["message_bytes"])), "-m",
                        str(len(messages)), "-f", "news@example.org", "-t", "x@example.test",
                        f"127.0.0.1:{sink.port}"], check=True, capture_output=True, timeout=300)
        figures["smtp_source_one_session_per_s"] = len(messages) / (time.monotonic() - t0)
    finally:
        sink.stop()

    figures = {k: round(v, 1) for k, v in figures.items()}
    print_table([
        ("render subject + HTML + text (sandboxed Jinja2)", f"{figures['render_us']} us", "per email"),
        ("unsubscribe token (signed)", f"{figures['unsubscribe_token_us']} us", "per email"),
        ("MIME assembly (Skeleton.build_message)", f"{figures['mime_build_us']} us",
         f"{figures['message_bytes']:.0f}-byte messages"),
        ("dispatch payload JSON encode + decode", f"{figures['payload_json_us']} us",
         f"{figures['payload_bytes_per_email']:.0f} bytes per email"),
        ("SMTP client CPU (app.smtp, one connection)", f"{figures['app_smtp_cpu_us']} us", "per email"),
        ("SMTP rate, app.smtp on one connection", f"{figures['app_smtp_one_connection_per_s']:.0f}/s", ""),
        ("SMTP rate, smtp-source on one session", f"{figures['smtp_source_one_session_per_s']:.0f}/s",
         "the floor for one connection"),
    ])
    path = write_results("parts", figures, {"emails": args.emails})
    print(f"wrote {path.relative_to(ROOT)}")
    emit(figures)
    return 0
