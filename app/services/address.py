"""Email addresses checked by email-validator (syntax and normalisation, no DNS), fast enough
for a million-row import.

email-validator spends about 80 µs on an address, nearly all of it on the domain (IDNA and
Unicode checks): 80 s for a million rows. An import has few distinct domains, so the domain
verdict is cached. Only the plainest shape takes the cached path: an ASCII dot-atom local part
(the library's own DOT_ATOM_TEXT pattern), one @-sign and an ASCII hostname; for that shape
email-validator's result is exactly `local + "@" + normalised domain` (nothing in split_email,
the local-part check or NFC normalisation changes ASCII dot-atoms). Everything else (quotes,
Unicode, mailbox names it lower-cases, anything near a length limit, a domain it refuses)
goes through the library itself, so its verdicts and messages are the library's.
tests/test_address.py checks the two paths agree.
"""
import re

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT

# The plainest shape in one match: a dot-atom local part (the library's own pattern) and an
# ASCII hostname.
_PLAIN = re.compile("(" + DOT_ATOM_TEXT.pattern.removesuffix(r"\Z") + r")@([A-Za-z0-9.\-]+)\Z")
_LOWERED_LOCALS = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
# Below the library's limits (64 before the @, 254 in all) the lengths cannot fail it.
_SAFE_LOCAL, _SAFE_TOTAL = 64, 254
_DOMAINS_KEPT = 50_000
_domains: dict = {}


class InvalidAddress(ValueError):
    pass


def normalise(value: str) -> str:
    """The normalised address, or InvalidAddress with email-validator's reason."""
    plain = _PLAIN.match(value) if len(value) <= _SAFE_TOTAL else None
    if plain:
        local, domain = plain.groups()
        if len(local) <= _SAFE_LOCAL and local.lower() not in _LOWERED_LOCALS:
            normal_domain = _domains.get(domain) or _domain(domain)
            if normal_domain:
                return local + "@" + normal_domain
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None


def _domain(domain: str) -> str | None:
    """The library's normalised form of a domain it accepts, else None (then the whole
    address goes through the library for the exact message). Kept for the next rows."""
    try:
        normal = validate_email("a@" + domain, check_deliverability=False).domain
    except EmailNotValidError:
        return None
    if len(_domains) >= _DOMAINS_KEPT:
        _domains.clear()
    _domains[domain] = normal
    return normal
