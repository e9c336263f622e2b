"""Unit tests of the per-recipient rendering (app/render.py) and the MIME assembly (app/mime.py):
what a recipient's mail program will parse, byte for byte, from hostile and huge input too."""
import re
import time
import tracemalloc
from email import policy
from email.parser import BytesParser

import pytest

from app.mime import Attachment, Skeleton
from app.render import MAX_RENDERED_BYTES, RenderError, check_template, compile_campaign

CAMPAIGN = {"id": 42, "name": "Spring", "from_name": "Jo Sender", "from_email": "jo@example.org",
            "reply_to": "replies@example.org", "subject": "Hi {{ contact.name }}", "body_html": "<p>x</p>"}
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 50 + b"\n%%EOF\n"


def context(name="Ann", **attributes):
    return {"contact": {"id": 7, "email": "ann@example.com", "name": name, "status": "subscribed",
                        "attributes": attributes, "tags": ["vip"]},
            "data": {}, "campaign": {"id": 42, "name": "Spring"}, "unsubscribe_url": "https://x.example/u/TOKEN"}


def render(subject="Hi {{ contact.name }}", body="<p>Dear {{ contact.name }}</p>", **ctx):
    return compile_campaign({"subject": subject, "body_html": body}).render(context(**ctx))


def parse(raw: bytes):
    return BytesParser(policy=policy.default).parsebytes(raw)


def message(campaign=None, attachments=(), **fields):
    skeleton = Skeleton.build(campaign or CAMPAIGN, list(attachments))
    values = {"to_name": "Ann Example", "to_email": "ann@example.com", "subject": "Hello Ann",
              "html": "<p>Dear Ann</p>", "text": "Dear Ann\n", "message_id": skeleton.message_id(1001),
              "unsubscribe_url": "https://x.example/u/TOKEN", **fields}
    return skeleton.build_message(**values)


# ---- app/render.py -------------------------------------------------------------------------

@pytest.mark.parametrize("source", [
    "Hi {{ contact.name }} from {{ contact.attributes.city }}",
    "{% for t in contact.tags %}{{ t }}{% endfor %} {{ data.plan }} {{ campaign.name }} {{ unsubscribe_url }}",
    "{% set greeting = 'Hello' %}{{ greeting }}, {{ contact.name | title }}",
    "no template at all",
])
def test_templates_using_the_allowed_names_pass(source):
    check_template(source, "Body")


@pytest.mark.parametrize("source,message", [
    ("Hi {{ contact.name", "Body: syntax error on line 1: unexpected end of template"),
    ("<p>\n\n{% if contact.name %}", "Body: syntax error on line 3"),
    ("{{ contact.name }", "Body: syntax error on line 1"),
    ("{% endfor %}", "Body: syntax error on line 1"),
    ("{{ config }}", "Body: unknown variable(s) config; use campaign, contact, data, unsubscribe_url"),
    ("{{ request }} {{ g }} {{ url_for('x') }}", "Body: unknown variable(s) g, request, url_for"),
])
def test_broken_templates_are_refused_with_the_reason(source, message):
    with pytest.raises(RenderError) as refused:
        check_template(source, "Body")
    assert str(refused.value).startswith(message), str(refused.value)


def test_rendering_personalises_and_escapes_html_only():
    r = render(body="<p>Dear {{ contact.name }} of {{ contact.attributes.city }}</p>",
               name="<b>Ann</b> & Co", city="Oslo")
    assert r.subject == "Hi <b>Ann</b> & Co"  # a header, not HTML
    assert "Dear &lt;b&gt;Ann&lt;/b&gt; &amp; Co of Oslo" in r.html
    assert "Dear <b>Ann</b> & Co of Oslo" in r.text


def test_a_subject_cannot_smuggle_a_header():
    r = render(subject="Hi {{ contact.name }}", name="Ann\r\nBcc: victim@example.com\n")
    assert r.subject == "Hi Ann Bcc: victim@example.com"


def test_the_unsubscribe_footer_is_added_only_when_the_body_has_no_link():
    r = render(body="<p>Hello</p>")
    assert r.html.count("https://x.example/u/TOKEN") == 1 and "Unsubscribe" in r.html
    assert "https://x.example/u/TOKEN" in r.text
    r = render(body='<p><a href="{{ unsubscribe_url }}">Stop these</a></p>')
    assert r.html.count("https://x.example/u/TOKEN") == 1 and "Unsubscribe" not in r.html


def test_css_is_inlined_and_the_text_part_derived_without_markup():
    body = ("<html><head><style>p.greet { color: #123456; }</style></head><body>"
            "<p class=\"greet\">Dear {{ contact.name }},</p><ul><li>one</li></ul></body></html>")
    r = render(body=body)
    assert 'style="color: #123456' in r.html and "<style" not in r.html
    assert "Dear Ann," in r.text and "* one" in r.text
    assert "<p" not in r.text and "color" not in r.text


@pytest.mark.parametrize("body,message", [
    ("{{ contact.attributes.city }}", "unknown variable: 'dict object' has no attribute 'city'"),
    ("{{ contact.nickname }}", "unknown variable"),
    ("{{ contact.__class__.__mro__ }}", "not allowed in a template"),
    ("{{ contact.attributes.clear() }}", "not allowed in a template"),
    ("{{ contact.tags.append('x') }}", "not allowed in a template"),
    ("{{ 'x' * 200000 }}", "not allowed in a template: repetition too large"),
    ("{{ [1, 2] * 100000 }}", "not allowed in a template: repetition too large"),
    ("{{ 2 ** 100000 }}", "not allowed in a template: exponent too large"),
    ("{{ range(10000000) | list }}", "template error"),
    ("{{ 1 / 0 }}", "template error: ZeroDivisionError"),
    ("{{ contact.name + 1 }}", "template error: TypeError"),
])
def test_render_errors_are_clear_and_never_escape(body, message):
    with pytest.raises(RenderError) as refused:
        render(body=body)
    assert message in str(refused.value), str(refused.value)


def test_an_empty_subject_is_refused():
    with pytest.raises(RenderError, match="the subject renders empty"):
        render(subject="{{ contact.attributes.get('missing', '') }}  ")


def test_a_render_bomb_stops_at_the_size_limit_without_eating_memory():
    body = "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}"  # 10 GB if let run
    campaign = compile_campaign({"subject": "s", "body_html": body})
    tracemalloc.start()
    try:
        with pytest.raises(RenderError, match="over 2 MB"):
            campaign.render(context())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_RENDERED_BYTES


@pytest.mark.parametrize("body", [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",  # prints nothing
    "{% for i in range(100000) %}{% for j in range(100000) %}{% if false %}x{% endif %}{% endfor %}{% endfor %}",
])
def test_a_render_that_runs_without_end_stops_at_the_time_limit(body):
    campaign = compile_campaign({"subject": "s", "body_html": body})
    started = time.monotonic()
    with pytest.raises(RenderError, match="took over 1 s to render"):
        campaign.render(context())
    assert time.monotonic() - started < 5
    # The budget is per email: the next render gets its own second.
    quick = compile_campaign({"subject": "s", "body_html": "{% for i in range(3) %}{{ i }}{% endfor %}"})
    assert "012" in quick.render(context()).html


def test_a_macro_that_calls_itself_fails_the_email_with_a_reason():
    with pytest.raises(RenderError, match="calls itself without end"):
        render(body="{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}")


def test_an_email_just_under_the_limit_renders():
    r = render(body="{% for i in range(9) %}{{ 'y' * 100000 }}{% endfor %}")
    assert len(r.html) >= 900_000


# ---- app/mime.py ---------------------------------------------------------------------------

def lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n")


def test_a_message_has_both_parts_the_attachments_and_the_headers():
    files = [Attachment("cv.pdf", "application/pdf", PDF),
             Attachment("Lebenslauf Müller.pdf", "application/pdf", b"\x00\xff" * 3000)]
    raw = message(attachments=files, text="Dear Ann,\nsee the files.\n",
                  html="<p>Dear Ann,</p><p>see the files.</p>")
    m = parse(raw)
    assert m.get_content_type() == "multipart/mixed"
    alternative = next(m.iter_parts())
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    assert m.get_body(("plain",)).get_content().replace("\r\n", "\n") == "Dear Ann,\nsee the files.\n"
    assert m.get_body(("html",)).get_content().replace("\r\n", "\n").strip() == "<p>Dear Ann,</p><p>see the files.</p>"
    got = {p.get_filename(): p.get_payload(decode=True) for p in m.iter_attachments()}
    assert got == {"cv.pdf": PDF, "Lebenslauf Müller.pdf": b"\x00\xff" * 3000}

    assert m["From"].addresses[0].display_name == "Jo Sender"
    assert m["From"].addresses[0].addr_spec == "jo@example.org"
    assert m["To"].addresses[0].addr_spec == "ann@example.com"
    assert m["Reply-To"] == "replies@example.org"
    assert m["Subject"] == "Hello Ann"
    assert m["X-Campaign-ID"] == "42"
    assert m["List-Unsubscribe"] == "<https://x.example/u/TOKEN>"
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert m["MIME-Version"] == "1.0" and m["Date"].datetime is not None
    assert re.fullmatch(r"<[^<>@\s]+@example\.org>", m["Message-ID"])


def test_without_attachments_the_message_is_multipart_alternative():
    m = parse(message())
    assert m.get_content_type() == "multipart/alternative"
    assert list(m.iter_attachments()) == []


def test_optional_headers_are_left_out_when_unset():
    m = parse(message(campaign={**CAMPAIGN, "reply_to": ""}, unsubscribe_url=None))
    assert m["Reply-To"] is None and m["List-Unsubscribe"] is None and m["List-Unsubscribe-Post"] is None


def test_message_ids_are_unique_per_delivery_and_never_reused():
    skeleton = Skeleton.build(CAMPAIGN, [])
    ids = {skeleton.message_id(d) for d in range(100)} | {skeleton.message_id(5)}
    assert len(ids) == 101


def test_non_ascii_names_and_subjects_round_trip():
    campaign = {**CAMPAIGN, "from_name": "Jöhn Dœ – Ünïcode"}
    m = parse(message(campaign=campaign, to_name='Doe, "Jo" Ängström', subject="Grüße, Ann! 🎉 " + "ä" * 300))
    assert m["From"].addresses[0].display_name == "Jöhn Dœ – Ünïcode"
    assert m["To"].addresses[0].display_name == 'Doe, "Jo" Ängström'
    assert m["To"].addresses[0].addr_spec == "ann@example.com"
    assert m["Subject"] == "Grüße, Ann! 🎉 " + "ä" * 300


def test_headers_cannot_be_injected_through_any_value():
    evil = "x\r\nBcc: victim@example.com\r\n\r\n<html>"
    raw = message(campaign={**CAMPAIGN, "from_name": evil, "reply_to": "r@example.org" + evil},
                  to_name=evil, subject=evil,
                  attachments=[Attachment('a"' + evil + '.pdf', "application/pdf", b"%PDF")])
    m = parse(raw)
    assert m["Bcc"] is None
    assert not any(line.lower().startswith(b"bcc:") for line in lines(raw))
    assert m.get_content_type() == "multipart/mixed" and len(list(m.iter_attachments())) == 1


def test_the_wire_format_is_crlf_with_short_lines():
    html = "<p>" + "word " * 2000 + "</p>\n<p>" + "é" * 3000 + "</p>"
    text = "a\nb\r\nc\rd\x00e\n" + "z" * 5000 + "\n"
    raw = message(html=html, text=text, subject="S" * 1200, attachments=[Attachment("f.bin", "x/y", PDF * 3)])
    assert re.search(rb"(?<!\r)\n", raw) is None and re.search(rb"\r(?!\n)", raw) is None
    assert max(len(line) for line in lines(raw)) <= 998
    m = parse(raw)
    assert m.get_body(("html",)).get_content().replace("\r\n", "\n").rstrip("\n") == html
    assert m.get_body(("plain",)).get_content().replace("\r\n", "\n") == "a\nb\nc\nd\x00e\n" + "z" * 5000 + "\n"
    assert m["Subject"] == "S" * 1200


# ---- RFC 2047 by hand (app/mime.py): what mail programs decode, for any name and subject ---

def _random_text(rng, size):
    pools = [
        [chr(c) for c in range(0x20, 0x7F)],  # printable ASCII
        list('"\\,;:<>()[]@.\'=?_'),  # address specials, escapes, encoded-word look-alikes
        list("\r\n\t\x00\x0b\x0c\x1c\x85\xa0\u2028\u3000 "),  # breaks, NUL, Unicode spaces
        list("äöüßéèçñøåÆŒ–—“”‘’…€"),
        [chr(c) for c in range(0x300, 0x370)],  # combining marks
        [chr(c) for c in range(0x4E00, 0x4E00 + 3000)],  # CJK
        [chr(c) for c in range(0x1F300, 0x1FAFF)] + ["\u200d", "\ufe0f", "🇳🇴", "👩‍👩‍👧"],  # emoji
        [chr(c) for c in range(0x5D0, 0x5EB)] + [chr(c) for c in range(0x627, 0x64A)],  # Hebrew, Arabic
        [chr(c) for c in range(0x1D400, 0x1D4FF)] + ["\x01", "\x7f", "\u200b", "\ufeff"],  # astral, controls
        ["=?utf-8?b?SGk=?=", "=?iso-8859-1?q?x?=", "?=", "=?"],
    ]
    weights = [rng.random() for _ in pools]
    return "".join(rng.choice(rng.choices(pools, weights)[0]) for _ in range(size))


def encoded_words(raw: bytes, header: str) -> list[str]:
    """The decoded encoded-words of a header, each on its own."""
    from email import policy as policies

    value = BytesParser(policy=policies.compat32).parsebytes(raw, headersonly=True)[header]
    return [__import__("base64").b64decode(w).decode() for w in re.findall(r"=\?utf-8\?b\?([^?]*)\?=", value)]


def test_names_and_subjects_decode_to_what_was_given_for_any_unicode():
    import random
    from email.utils import formataddr

    from app.mime import _clean, address

    rng = random.Random(2047)
    cases = [_random_text(rng, rng.choice([0, 1, 2, 5, 12, 30, 60, 200, 1000])) for _ in range(1000)]
    cases += ["Ann", "Ann Example", 'Doe, "Jo"', "a\\b", "O'Brien", "Dr. Who", "x" * 950, "é" * 2000,
              "e\u0301" * 40, "🎉" * 100, "日本語" * 50, "=?utf-8?b?SGk=?=", " \r\n ", "\x00", "Bcc: x@example.org"]
    for i, value in enumerate(cases):
        subject = value if _clean(value) else "fallback"
        from_name = cases[-i - 1]
        raw = message(campaign={**CAMPAIGN, "from_name": from_name}, to_name=value, subject=subject)
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert re.search(rb"(?<!\r)\n|\r(?!\n)", head) is None
        header_lines = head.split(b"\r\n")
        assert all(len(line) <= 998 for line in header_lines)
        starts = [line.split(b":", 1)[0] for line in header_lines if line[:1] not in (b" ", b"\t")]
        assert starts.count(b"To") == starts.count(b"Subject") == starts.count(b"From") == 1, value
        assert b"Bcc" not in starts
        for word in re.findall(rb"=\?utf-8\?b\?([A-Za-z0-9+/=]*)\?=", head):
            assert len(word) + 12 <= 75
            __import__("base64").b64decode(word).decode("utf-8")  # whole characters in every word
        for line in header_lines:
            if b"=?utf-8?b?" in line:  # folded, the address included (it is short here)
                assert len(line) <= 76, line
        m = parse(raw)
        assert m["Subject"] == _clean(subject), (value, m["Subject"])
        assert m["To"].addresses[0].addr_spec == "ann@example.com"
        assert m["From"].addresses[0].addr_spec == "jo@example.org"
        for header, given in (("To", value), ("From", from_name)):
            display_name, words = m[header].addresses[0].display_name, encoded_words(raw, header)
            if len(words) > 1:  # RFC 2047 §6.2: the space between two encoded-words is no text
                assert "".join(words) == _clean(given), (header, given)
                # Python 3.11 keeps that space in an address's name (gh-128110, fixed in 3.14)
                assert display_name == " ".join(words), (header, given)
            else:
                assert display_name == _clean(given), (header, given)
        assert not m.defects
        for header in ("To", "From", "Subject"):  # a control character given is noted, nothing else
            assert all(type(d).__name__ == "NonPrintableDefect" for d in m[header].defects), (header, value)
        cleaned = _clean(value)
        if cleaned.isascii() and cleaned.isprintable() and "=?" not in cleaned and len(cleaned) < 900:
            assert address(value, "ann@example.com") == formataddr((cleaned, "ann@example.com"))  # byte for byte


def test_a_non_ascii_address_still_cannot_be_built():
    with pytest.raises(UnicodeEncodeError):
        message(to_email="änn@example.com")


def test_message_ids_name_campaign_and_delivery_and_differ_per_attempt_and_process():
    a, b = Skeleton.build(CAMPAIGN, []), Skeleton.build(CAMPAIGN, [])
    first, again = a.message_id(1001), a.message_id(1001)
    assert first != again and a.message_id(1001) != b.message_id(1001)
    assert re.fullmatch(r"<c42\.d1001\.[0-9a-f]{16}\.\d+@example\.org>", first)
    assert parse(message())["Message-ID"].startswith("<c42.d1001.")
