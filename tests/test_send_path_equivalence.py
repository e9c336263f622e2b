"""The send path's fast paths (issue 6) give exactly what the stock library paths give.

No timing here (speed is measured by `scripts/bench send`): these tests pin the behaviour the
optimisations must not change.
"""
from email import policy
from email.parser import BytesParser

import pytest
from itsdangerous import URLSafeTimedSerializer

from app.config import Config
from app.mime import Attachment, Skeleton
from app.render import CompiledCampaign, RenderError
from app.tokens import BadToken, sign, verify


def parse(raw: bytes):
    return BytesParser(policy=policy.default).parsebytes(raw)


@pytest.mark.parametrize("payload", [[123, 45], [7, None], ["x" * 400, list(range(50))]])
def test_tokens_are_the_stock_itsdangerous_tokens(payload):
    stock = URLSafeTimedSerializer(Config.SECRET_KEY, salt="mailer.unsubscribe")
    token = sign("unsubscribe", payload)
    assert stock.loads(token) == payload
    assert verify("unsubscribe", stock.dumps(payload), 60) == payload
    assert token.rsplit(".", 2)[0] == stock.dumps(payload).rsplit(".", 2)[0]


def test_a_token_for_another_purpose_or_tampered_is_refused():
    token = sign("unsubscribe", [1, 2])
    with pytest.raises(BadToken):
        verify("other", token, 60)
    with pytest.raises(BadToken):
        verify("unsubscribe", token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], 60)


def render(body: str, contact: dict):
    return CompiledCampaign("Hi {{ contact.name }}", body).render(
        {"contact": contact, "data": {}, "campaign": {"id": 1, "name": "c"}, "unsubscribe_url": "http://x/u/t"})


def test_dict_lookups_in_templates_behave_as_stock_jinja():
    contact = {"name": "Ann <b>", "attributes": {"city": "Oslo", "items": "a key named like a method"}}
    r = render("{{ contact.name }} {{ contact.attributes.city }} {{ contact['attributes']['items'] }} "
               "{{ contact.attributes.items() | list | length }} {{ contact.attributes.get('city') }} "
               "{{ range(3) | list }}", contact)
    assert "Ann &lt;b&gt; Oslo a key named like a method 2 Oslo [0, 1, 2]" in r.html
    assert r.subject == "Hi Ann <b>"
    with pytest.raises(RenderError, match="unknown variable"):
        render("{{ contact.attributes.missing }}", contact)
    with pytest.raises(RenderError):
        render("{{ contact.__class__.__mro__ }}", contact)


@pytest.mark.parametrize("text,html,encoding", [
    ("Hello\n.\nworld = 1\n", "<p>Hi</p>\r\n<p>a=b</p>", "7bit"),
    ("Zoë\nŁukasz\n", "<p>Zoë</p>", "quoted-printable"),
    ("a" * 1200, "<p>" + "b" * 2000 + "</p>", "quoted-printable"),
    ("nul\x00byte", "<p>ok</p>", None),
])
def test_both_parts_round_trip_whatever_their_transfer_encoding(text, html, encoding):
    for files in ([], [Attachment("cv.pdf", "application/pdf", b"%PDF-1.4 cv")]):
        sk = Skeleton.build({"id": 3, "from_name": "Jo", "from_email": "jo@example.org", "reply_to": ""}, files)
        msg = parse(sk.build_message(to_name="Zoë", to_email="z@example.org", subject="Sübject", html=html,
                                     text=text, message_id=sk.message_id(9), unsubscribe_url=None))
        plain, rich = msg.get_body(("plain",)), msg.get_body(("html",))
        if encoding:
            assert plain["Content-Transfer-Encoding"] == encoding
        assert plain.get_content().replace("\r\n", "\n").rstrip("\n") == text.rstrip("\n")
        assert rich.get_content().replace("\r\n", "\n").rstrip("\n") == html.replace("\r\n", "\n")
        assert msg["Subject"] == "Sübject" and msg["To"].addresses[0].display_name == "Zoë"
        assert [p.get_filename() for p in msg.iter_attachments()] == [f.filename for f in files]
