"""`scripts/bench parts`: CPU per email of each step of the send path, in one process.

The end-to-end figure (`scripts/bench send`) says how fast; this says where the time goes,
per email, with the app's own code and the `send` benchmark's campaign: rendering, the
unsubscribe token, MIME assembly, a dispatch message through Dramatiq's JSON encoder and
through ours (orjson), and SMTP over one connection into smtp-sink (`Sender.send_many` in
batches of `--smtp-batch`, against Postfix's smtp-source on one session). No database or broker: it runs anywhere in a few seconds.
"""
import argparse
import json
import os
import resource
import secrets
import subprocess
import time

from .common import ROOT, BenchError, emit, print_table, write_results


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
    p.add_argument("--smtp-batch", type=int, default=100,
                   help="emails per Sender.send_many call in the SMTP step (100)")
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
    # A dispatch message as prepare publishes it, through Dramatiq's stock JSONEncoder and
    # through the encoder the workers use (consumers/encoding.py).
    import dramatiq
    from dramatiq.encoder import JSONEncoder

    from consumers.encoding import OrjsonEncoder

    def through(encoder):
        def run(batch):
            message = dramatiq.Message(queue_name="dispatch", actor_name="dispatch", args=(1, batch), kwargs={},
                                       options={})
            dramatiq.Message(**encoder.decode(encoder.encode(message.asdict())))
        return run

    non_ascii = [{**e, "n": f"Zoë Łukasz {e['d']}", "s": f"Grüße, Zoë Łukasz {e['d']}"} for e in emails]

    figures = {
        "render_us": per_email_us(lambda r: compiled.render(context(r)), rows),
        "unsubscribe_token_us": per_email_us(lambda r: unsubscribe_url(r["contact_id"], 1), rows),
        "mime_build_us": per_email_us(lambda e: skeleton.build_message(
            to_name=e["n"], to_email=e["to"], subject=e["s"], html=e["h"], text=e["t"],
            message_id=skeleton.message_id(e["d"]), unsubscribe_url=e["u"]), emails),
        "mime_build_non_ascii_us": per_email_us(lambda e: skeleton.build_message(
            to_name=e["n"], to_email=e["to"], subject=e["s"], html=e["h"], text=e["t"],
            message_id=skeleton.message_id(e["d"]), unsubscribe_url=e["u"]), non_ascii),
        "payload_json_us": per_email_us(through(JSONEncoder()), batches) / 100,
        "payload_encoder_us": per_email_us(through(OrjsonEncoder()), batches) / 100,
        "payload_bytes_per_email": sum(map(len, payloads)) / len(emails),
        "message_bytes": sum(map(len, messages)) / len(messages),
    }

    logdir = ROOT / "var" / f"bench-parts-{os.getpid()}"
    sink = Sink(logdir, "smtp-sink")
    try:
        from app.smtp import SmtpPool

        # As dispatch sends: Sender.send_many over one connection, a batch at a time (the
        # claim chunk is 10 by default: each batch starts and drains its own pipeline).
        sender = SmtpPool([SmtpServer.from_url(f"smtp://127.0.0.1:{sink.port}")]).sender()
        items = [(e["to"], m) for e, m in zip(emails, messages)]
        sender.send_many("news@example.org", items[:1])  # connect, EHLO

        def timed(send):
            """CPU per email (user + kernel, and user alone: the kernel share is mostly the
            loopback TCP path, and doubles when the sink runs on the other core) and rate."""
            t0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
            send()
            t1, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - wall0
            user = t1.ru_utime - t0.ru_utime
            return ((user + t1.ru_stime - t0.ru_stime) / len(items) * 1e6, user / len(items) * 1e6,
                    len(items) / wall)

        def many(batch):
            results = [r for i in range(0, len(items), batch)
                       for r in sender.send_many("news@example.org", items[i:i + batch])]
            refused = [r for r in results if not isinstance(r, str)]
            if refused:
                raise BenchError(f"smtp-sink refused {len(refused)} emails, the first: {refused[0].reply}")

        def one_at_a_time():  # what dispatch did before send_many: two round trips per email
            for rcpt, message in items:
                sender.send("news@example.org", rcpt, message)

        for suffix, send in (("", lambda: many(args.smtp_batch)), ("_batch10", lambda: many(10)),
                             ("_send_one", one_at_a_time)):
            (figures["app_smtp_cpu_us" + suffix], figures["app_smtp_user_us" + suffix],
             figures["app_smtp_one_connection_per_s" + suffix]) = timed(send)
        sender.release()
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
        ("MIME assembly, every name and subject non-ASCII", f"{figures['mime_build_non_ascii_us']} us",
         "RFC 2047 encoded-words"),
        ("dispatch message, Dramatiq's JSONEncoder", f"{figures['payload_json_us']} us",
         f"encode + decode, {figures['payload_bytes_per_email']:.0f} bytes per email"),
        ("dispatch message, the workers' encoder (orjson)", f"{figures['payload_encoder_us']} us",
         "encode + decode (consumers/encoding.py)"),
        ("SMTP client CPU (Sender.send_many, one connection)",
         f"{figures['app_smtp_cpu_us']} us ({figures['app_smtp_user_us']} user)",
         f"per email, batches of {args.smtp_batch}"),
        ("SMTP rate, Sender.send_many on one connection", f"{figures['app_smtp_one_connection_per_s']:.0f}/s", ""),
        ("SMTP client CPU, send_many in batches of 10",
         f"{figures['app_smtp_cpu_us_batch10']} us ({figures['app_smtp_user_us_batch10']} user)", "per email"),
        ("SMTP rate, send_many in batches of 10", f"{figures['app_smtp_one_connection_per_s_batch10']:.0f}/s", ""),
        ("SMTP client CPU, Sender.send one at a time",
         f"{figures['app_smtp_cpu_us_send_one']} us ({figures['app_smtp_user_us_send_one']} user)", "per email"),
        ("SMTP rate, Sender.send one at a time", f"{figures['app_smtp_one_connection_per_s_send_one']:.0f}/s", ""),
        ("SMTP rate, smtp-source on one session", f"{figures['smtp_source_one_session_per_s']:.0f}/s",
         "the floor for one connection"),
    ])
    path = write_results("parts", figures, {"emails": args.emails, "smtp_batch": args.smtp_batch})
    print(f"wrote {path.relative_to(ROOT)}")
    emit(figures)
    return 0
