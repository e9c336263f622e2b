"""Per-recipient rendering of a campaign in a sandboxed Jinja2 environment.

The expensive, recipient-independent work (CSS inlining, deriving the text part from the
HTML, parsing) happens once per campaign in `compile_campaign`; per email only the three
compiled templates are rendered.
"""
import math
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass

import css_inline
import html2text
from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range

# Names a template may use; anything else is refused when the campaign is saved.
ALLOWED_NAMES = {"contact", "data", "campaign", "unsubscribe_url"}
MAX_RENDERED_BYTES = 2 * 1024 * 1024
RENDER_SECONDS = 1.0  # one email's render; a campaign's usually takes ~20 µs
_deadline: ContextVar[float] = ContextVar("render_deadline", default=math.inf)

_JINJA_TAG = re.compile(r"{{.*?}}|{%.*?%}|{#.*?#}", re.S)


_DICT_ATTRIBUTES = frozenset(dir(dict))


class _Sandbox(ImmutableSandboxedEnvironment):
    """The stock sandbox still lets `'x' * 10**9` eat the worker's memory: bound * and **."""

    intercepted_binops = frozenset(["*", "**"])

    def getattr(self, obj, attribute):
        """`contact.name` on a plain dict without the stock path's failed getattr() and its
        exception (a fifth of a render). Same result: a dict has no attribute outside
        dir(dict), so the stock path would fall through to obj[attribute] as well."""
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    @staticmethod
    def concat(pieces):
        """Join a render's output as it is produced and stop at MAX_RENDERED_BYTES: a loop like
        `{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}` would otherwise build
        10 GB before any size check could see it."""
        out, size = [], 0
        for piece in pieces:
            size += len(piece)
            if size > MAX_RENDERED_BYTES:
                raise SecurityError("the rendered email is over 2 MB")
            out.append(piece)
        return "".join(out)

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
            raise SecurityError("exponent too large")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > 100_000:
                    raise SecurityError("repetition too large")
        return super().call_binop(context, operator, left, right)


def _range(*args):
    """range() for templates, counted against the email's render time: nested loops that
    print nothing never meet the output cap, and would otherwise hold a worker for hours."""
    for i, value in enumerate(safe_range(*args)):
        if not i & 1023 and time.monotonic() > _deadline.get():
            raise SecurityError(f"the template took over {RENDER_SECONDS:g} s to render")
        yield value


_html_env = _Sandbox(undefined=StrictUndefined, autoescape=True)
_text_env = _Sandbox(undefined=StrictUndefined, autoescape=False)
_html_env.globals["range"] = _text_env.globals["range"] = _range

UNSUBSCRIBE_FOOTER = (
    '<p style="font-size:12px;color:#666">'
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a> from these emails.</p>'
)


class RenderError(ValueError):
    """A template that cannot be compiled or rendered; the message is shown to the manager."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


def _protect(source: str):
    """Swap Jinja tags for inert tokens so HTML tools can work on a template's source."""
    tags = []

    def keep(m):
        tags.append(m.group(0))
        return f"JINJAX{len(tags) - 1}X"

    return _JINJA_TAG.sub(keep, source), tags


def _restore(text: str, tags) -> str:
    return re.sub(r"JINJAX(\d+)X", lambda m: tags[int(m.group(1))], text)


def html_to_text_template(html_source: str) -> str:
    protected, tags = _protect(html_source)
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.unicode_snob = True
    return _restore(converter.handle(protected).strip() + "\n", tags)


def inline_css(html_source: str) -> str:
    if "<style" not in html_source.lower():
        return html_source
    protected, tags = _protect(html_source)
    try:
        inlined = css_inline.inline(protected)
    except ValueError as exc:
        raise RenderError(f"CSS could not be inlined: {exc}") from None
    return _restore(inlined, tags)


def check_template(source: str, what: str) -> None:
    """Raise RenderError for a syntax error or a name outside ALLOWED_NAMES."""
    try:
        ast = _html_env.parse(source)
    except TemplateSyntaxError as exc:
        raise RenderError(f"{what}: syntax error on line {exc.lineno}: {exc.message}") from None
    unknown = meta.find_undeclared_variables(ast) - ALLOWED_NAMES
    if unknown:
        raise RenderError(
            f"{what}: unknown variable(s) {', '.join(sorted(unknown))}; "
            f"use {', '.join(sorted(ALLOWED_NAMES))}"
        )


def _flat(template):
    """Jinja keeps a template's globals as a ChainMap over the environment's and walks it twice
    per render; a plain dict of the same (never changing) globals makes that a dict copy."""
    template.globals = dict(template.globals)
    return template


class CompiledCampaign:
    """Subject, HTML and text templates of one campaign, ready to render per recipient."""

    def __init__(self, subject: str, body_html: str):
        check_template(subject, "Subject")
        check_template(body_html, "Body")
        if "unsubscribe_url" not in body_html:
            body_html = body_html + UNSUBSCRIBE_FOOTER
        body_html = inline_css(body_html)
        self._subject = _flat(_text_env.from_string(subject))
        self._html = _flat(_html_env.from_string(body_html))
        self._text = _flat(_text_env.from_string(html_to_text_template(body_html)))

    def render(self, context: dict) -> Rendered:
        deadline = _deadline.set(time.monotonic() + RENDER_SECONDS)
        try:
            subject = " ".join(self._subject.render(context).split())
            html = self._html.render(context)
            text = self._text.render(context)
        except RecursionError:
            raise RenderError("template error: a macro calls itself without end") from None
        except UndefinedError as exc:
            raise RenderError(f"unknown variable: {exc.message}") from None
        except SecurityError as exc:
            raise RenderError(f"not allowed in a template: {exc}") from None
        except TemplateError as exc:
            raise RenderError(f"template error: {exc}") from None
        except (ArithmeticError, TypeError, ValueError, LookupError) as exc:
            raise RenderError(f"template error: {type(exc).__name__}: {exc}") from None
        finally:
            _deadline.reset(deadline)
        if not subject:
            raise RenderError("the subject renders empty")
        if len(html) + len(text) > MAX_RENDERED_BYTES:
            raise RenderError("the rendered email is over 2 MB")
        return Rendered(subject, html, text)


def compile_campaign(campaign: dict) -> CompiledCampaign:
    return CompiledCampaign(campaign["subject"], campaign["body_html"])


def contact_context(row: dict) -> dict:
    return {
        "id": row["contact_id"],
        "email": row["email"],
        "name": row["name"],
        "status": row.get("status", "subscribed"),
        "attributes": row["attributes"] or {},
        "tags": row.get("tags") or [],
    }
