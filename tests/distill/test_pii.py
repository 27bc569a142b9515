"""distill.pii: what the scrubber replaces (emails, phones, cards, IBANs, addresses ...) and what it must leave alone."""

import pytest

from distill.pii import Scrubber, luhn_ok, scrub_messages


def scrub(text, names=()):
    return Scrubber(names=names).scrub(text)


@pytest.mark.parametrize("text, kind", [
    ("mail me at jane.doe+x@mail.example.co.uk", "EMAIL"),
    ("call (555) 123-4567", "PHONE"),
    ("call +44 20 7946 0958", "PHONE"),
    ("card 4111 1111 1111 1111", "CARD"),
    ("IBAN GB82 WEST 1234 5698 7654 32", "IBAN"),
    ("from 203.0.113.7.", "IP"),
    ("ship to 742 Evergreen Terrace, Springfield, IL 62704", "ADDRESS"),
    ("reset at https://example.com/reset?token=abcdef1234567890", "URL"),
])
def test_detects(text, kind):
    assert f"[{kind}_1]" in scrub(text)


@pytest.mark.parametrize("text", [
    "Order NH-1234567 placed 2026-11-22 at 10:30",
    "firmware v2.3.1 and version 1.2.3.4.5",
    "it costs $19.99 for 60 days",
    "serial NS1234567890",
    "4111 1111 1111 1112",  # fails the Luhn check
    "call the 1-800 number",
])
def test_keeps_what_is_not_pii(text):
    assert scrub(text) == text


def test_placeholders_are_consistent_within_a_conversation():
    msgs = [{"role": "user", "content": "I'm Maria Garcia, maria@x.org"},
            {"role": "assistant", "content": "Thanks Maria, I wrote to maria@x.org and bob@y.org"}]
    out, counts = scrub_messages(msgs, ["Maria Garcia"])
    assert out[0]["content"] == "I'm [NAME_1], [EMAIL_1]"
    assert out[1]["content"] == "Thanks [NAME_1], I wrote to [EMAIL_1] and [EMAIL_2]"
    assert counts["EMAIL"] == 3 and counts["NAME"] == 2


def test_luhn():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


TRICKY_NOT_PII = [
    "Order #123-456-7890X shipped",  # order number glued to letters
    "Ticket 2026-11-22-0042 opened",
    "Meeting at 10:30-11:45 on 2026/11/22",
    "Upgrade to 3.14.159 then 10.0.19045",
    "Model NS-4000 and SKU 8812-22",
    "Pay $1,299.99 or 12 x $108.33",
    "Call window 9-5, zip 62704",
    "Tracking 1Z999AA10123456784",
]


@pytest.mark.parametrize("text", TRICKY_NOT_PII)
def test_tricky_strings_survive(text):
    assert scrub(text) == text
