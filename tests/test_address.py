"""The import's fast address check says exactly what email-validator says (pure unit test)."""
import random

import pytest
from email_validator import EmailNotValidError, validate_email

from app.services.address import InvalidAddress, normalise

CORPUS = [
    "jo@example.com", "Jo.Smith+news@Example.COM", "a@b.co", "x@localhost", "x@example", "x@test.test",
    "x@sub.invalid", "x@123.com", "x@example.123", "x@-bad.com", "x@bad-.com", "x@ex..com", ".jo@example.com",
    "jo.@example.com", "jo..x@example.com", "Info@Example.org", "POSTMASTER@example.org", "postmaster2@example.org",
    "jo@xn--bcher-kva.de", "jo@bücher.de", "zoë@example.com", "\"quoted\"@example.com", "jo@[127.0.0.1]",
    "Jo <jo@example.com>", "jo@example.com.", "@example.com", "jo@", "jo", "jo@@example.com", "jo@exa mple.com",
    "a" * 64 + "@example.com", "a" * 65 + "@example.com", "a@" + "b" * 63 + ".com", "a@" + "b" * 64 + ".com",
    "a" * 60 + "@" + ".".join(["b" * 60] * 3) + ".com", "a" * 10 + "@" + ".".join(["b" * 60] * 4) + ".com",
    "jo@ab--cd.com", "jo@xn--abc.com", "jo!#$%&'*+/=?^_`{|}~-x@example.com", "jo@exämple.com", "jo\n@example.com",
    "jo@example.com\n", "jo@ＥXAMPLE.com", "jo@example.c", "jo@e.example.arpa", "ab@my.local",
]


def library(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        return f"error: {exc}"


def ours(value: str) -> str:
    try:
        return normalise(value)
    except InvalidAddress as exc:
        return f"error: {exc}"


@pytest.mark.parametrize("value", CORPUS)
def test_the_fast_path_agrees_with_email_validator(value):
    assert ours(value) == library(value)


def test_random_addresses_agree_with_email_validator():
    rng = random.Random(5)
    alphabet = "abcXYZ019.-_+@!~ éü"
    tlds = ["com", "org", "io", "c0m", "x", "local", "test", "123"]
    for _ in range(3000):
        local = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        domain = "".join(rng.choice(alphabet.replace("@", "")) for _ in range(rng.randint(0, 12)))
        value = f"{local}@{domain}.{rng.choice(tlds)}" if rng.random() < 0.9 else local + domain
        assert ours(value) == library(value), value
