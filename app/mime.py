"""Fast MIME assembly.

`email.message.EmailMessage` costs about 1.7 ms per message, which alone caps a sender near
600 emails/s. Everything that is the same for every recipient (From, Reply-To, the encoded
attachments) is built once per campaign into a `Skeleton`; per email only the headers that
differ and the two quoted-printable text parts are encoded.
"""
import base64
import binascii
import re
import secrets
from email.header import Header
from email.utils import formataddr, formatdate, make_msgid
from dataclasses import dataclass

CRLF = b"\r\n"


def _clean(value: str) -> str:
    """No header injection: a rendered value never carries a line break into a header."""
    return " ".join(str(value).replace("\x00", "").split())


def encode_header(value: str) -> str:
    value = _clean(value)
    try:
        value.encode("ascii")
        if len(value) < 900:
            return value
    except UnicodeEncodeError:
        pass
    return Header(value, "utf-8", maxlinelen=76).encode(linesep="\r\n")


def address(name: str, email: str) -> str:
    return formataddr((_clean(name), _clean(email)), charset="utf-8")


_LONG_LINE = re.compile(r"[^\n]{999}")


def _body(text: str) -> tuple[str, bytes]:
    """A text part as (Content-Transfer-Encoding, CRLF-terminated bytes).

    ASCII with lines of at most 998 characters is valid as it is (7bit) and most campaigns
    are; anything else is quoted-printable. Quoting 1 KB costs ~11 us, a tenth of a send.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.isascii() and "\x00" not in text and not _LONG_LINE.search(text):
        return "7bit", text.replace("\n", "\r\n").encode("ascii")
    return "quoted-printable", binascii.b2a_qp("\r\n".join(text.split("\n")).encode("utf-8"), istext=True)


def _part(alt: str, content_type: str, text: str) -> bytes:
    encoding, body = _body(text)
    return (f"--{alt}\r\nContent-Type: {content_type}; charset=\"utf-8\"\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n").encode("ascii") + body


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


@dataclass
class Skeleton:
    """The per-campaign, recipient-independent parts of every message."""

    campaign_id: int
    from_header: str
    reply_to: str
    domain: str
    attachment_parts: bytes  # encoded MIME parts, each starting with its boundary line
    boundary: str

    @classmethod
    def build(cls, campaign: dict, attachments: list[Attachment]) -> "Skeleton":
        boundary = "=_m" + secrets.token_hex(12)
        parts = []
        for a in attachments:
            maintype = a.content_type if "/" in a.content_type else "application/octet-stream"
            fname = Header(_clean(a.filename), "utf-8").encode() if not a.filename.isascii() else _clean(a.filename).replace('"', "'")
            encoded = base64.encodebytes(a.content).replace(b"\n", CRLF)
            parts.append(
                f"--{boundary}\r\nContent-Type: {maintype}; name=\"{fname}\"\r\n"
                f"Content-Transfer-Encoding: base64\r\n"
                f"Content-Disposition: attachment; filename=\"{fname}\"\r\n\r\n".encode("ascii")
                + encoded
            )
        domain = campaign["from_email"].rpartition("@")[2] or "localhost"
        return cls(
            campaign_id=campaign["id"],
            from_header=address(campaign["from_name"], campaign["from_email"]),
            reply_to=_clean(campaign.get("reply_to") or ""),
            domain=domain,
            attachment_parts=b"".join(parts),
            boundary=boundary,
        )

    def message_id(self, delivery_id: int | str) -> str:
        return make_msgid(idstring=f"c{self.campaign_id}.d{delivery_id}", domain=self.domain)

    def build_message(self, *, to_name: str, to_email: str, subject: str, html: str, text: str,
                      message_id: str, unsubscribe_url: str | None, date: str | None = None) -> bytes:
        alt = "=_a" + secrets.token_hex(8)
        headers = [
            f"From: {self.from_header}",
            f"To: {address(to_name, to_email)}",
            f"Subject: {encode_header(subject)}",
            f"Date: {date or formatdate()}",
            f"Message-ID: {message_id}",
            "MIME-Version: 1.0",
            f"X-Campaign-ID: {self.campaign_id}",
        ]
        if self.reply_to:
            headers.append(f"Reply-To: {self.reply_to}")
        if unsubscribe_url:
            headers.append(f"List-Unsubscribe: <{unsubscribe_url}>")
            headers.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
        alternative = (_part(alt, "text/plain", text) + b"\r\n" + _part(alt, "text/html", html)
                       + f"\r\n--{alt}--\r\n".encode())
        if not self.attachment_parts:
            headers.append(f'Content-Type: multipart/alternative; boundary="{alt}"')
            return ("\r\n".join(headers) + "\r\n\r\n").encode("utf-8") + alternative
        headers.append(f'Content-Type: multipart/mixed; boundary="{self.boundary}"')
        return (
            ("\r\n".join(headers) + "\r\n\r\n").encode("utf-8")
            + f"--{self.boundary}\r\nContent-Type: multipart/alternative; boundary=\"{alt}\"\r\n\r\n".encode()
            + alternative
            + self.attachment_parts
            + f"--{self.boundary}--\r\n".encode()
        )
