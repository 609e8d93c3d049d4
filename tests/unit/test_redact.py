"""The redactor of upstream error text: every secret the gateway holds, and runs of it."""

from __future__ import annotations


def test_a_run_of_a_key_quoted_on_its_own_is_blanked_too() -> None:
    from polyroute.redact import Redactor

    key = "sk-proj-7d1c0a9b8e6f5d4c3b2a1908"
    r = Redactor([key])
    assert r.thoroughly(f"Incorrect API key provided: {key[:-4]}****.") == "Incorrect API key provided: [redacted]****."
    assert r.thoroughly(f"key ...{key[10:]} refused") == "key ...[redacted] refused"
    assert r.thoroughly("sk-proj-abcd is another key; 1908 alone says nothing") == (
        "sk-proj-abcd is another key; 1908 alone says nothing")
