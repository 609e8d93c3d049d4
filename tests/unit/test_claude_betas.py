"""Reading a client's ``anthropic-beta`` headers and an endpoint's refusal of some, and keeping what was refused."""

from __future__ import annotations

import pytest

from polyroute import refusals
from polyroute.adapters.claude_betas import betas_of, client_betas, joined, refused_betas, with_betas
from polyroute.refusals import REMEMBER, BetaRefusals

VERTEX = ("Unexpected value(s) `context-1m-2025-08-07`, `web-search-2025-03-05` for the `anthropic-beta` header. "
          "Please consult our documentation at docs.anthropic.com or try again without the header.")


def test_every_header_is_read_each_beta_once_without_the_sign_in_ones() -> None:
    headers = [(b"anthropic-version", b"2023-06-01"),
               (b"anthropic-beta", b"claude-code-20250219, oauth-2025-04-20,interleaved-thinking-2025-05-14"),
               (b"anthropic-beta", b"interleaved-thinking-2025-05-14,,context-1m-2025-08-07,bad name;x")]
    assert client_betas(headers) == ("interleaved-thinking-2025-05-14", "context-1m-2025-08-07")
    assert client_betas([(b"anthropic-beta", b",".join(b"b-%d" % i for i in range(100)))])[-1] == "b-31"


def test_the_betas_travel_beside_the_requests_fields() -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    req = with_betas(chat, ("context-1m-2025-08-07",))
    assert betas_of(req) == ("context-1m-2025-08-07",)
    assert "context-1m-2025-08-07" not in str(req.raw()) and not req.extras()
    assert betas_of(with_betas(chat, ())) == ()


def test_the_refused_names_are_read_and_merged_away() -> None:
    assert refused_betas(VERTEX) == {"context-1m-2025-08-07", "web-search-2025-03-05"}
    assert refused_betas("Unexpected value(s) for the `anthropic-version` header") == frozenset()
    assert joined(["a", "b"], ("b", "c"), ()) == "a,b,c"


def test_a_refusal_is_kept_an_hour_for_that_model_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(refusals.time, "monotonic", lambda: now[0])
    kept = BetaRefusals()
    kept.note("claude-opus-4-8", refused_betas(VERTEX))
    assert kept.of("claude-opus-4-8") == {"context-1m-2025-08-07", "web-search-2025-03-05"}
    assert kept.of("claude-sonnet-4-5") == frozenset()
    now[0] += REMEMBER + 1
    assert kept.of("claude-opus-4-8") == frozenset()
    kept.note("m", frozenset(f"beta-{i}" for i in range(BetaRefusals.MOST_PER_MODEL + 10)))
    assert len(kept.of("m")) == BetaRefusals.MOST_PER_MODEL
