"""Each provider's documented error body (tests/fixtures/PROVIDER/errors) lands on the right node of the tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyroute.adapters import anthropic, ollama, openai_compat
from polyroute.adapters.http import BodyReader, error_from_status
from polyroute.errors import (
    UpstreamBilling,
    UpstreamBlocked,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamRejected,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
READERS: dict[str, BodyReader] = {"anthropic": anthropic.read_error, "ollama": ollama.read_error}

CASES: list[tuple[str, type[UpstreamError], str]] = [
    # (fixture, class, words the operator reads)
    ("deepseek/402_insufficient_balance", UpstreamBilling, "account balance exhausted (402 Insufficient Balance)"),
    ("anthropic/400_credit_balance_too_low", UpstreamBilling, "credit balance too low"),
    ("anthropic/402_billing_error", UpstreamBilling, "billing problem on the account"),
    ("openai/429_insufficient_quota", UpstreamBilling, "quota exhausted (plan and billing)"),
    ("kimi/429_exceeded_current_quota_error", UpstreamBilling, "quota exceeded (plan and billing)"),
    ("dashscope/400_arrearage", UpstreamBilling, "account in arrears"),
    ("glm/429_1113_insufficient_balance", UpstreamBilling, "balance exhausted or no resource package"),
    ("deepseek/400_model_not_exist", UpstreamModelNotFound, "Model Not Exist"),
    ("openai/404_model_not_found", UpstreamModelNotFound, "does not exist"),
    ("anthropic/404_not_found_model", UpstreamModelNotFound, "model: claude"),
    ("ollama/404_model_not_found", UpstreamModelNotFound, "not found"),
    ("openai/400_invalid_value", UpstreamRejected, "temperature"),
    # A region block of one model behind a relay: the model's, not the relay account's.
    ("openrouter/403_provider_region_block", UpstreamBlocked, "OpenAI: Provider returned error"),
]


def test_every_fixture_is_covered_and_names_its_source() -> None:
    found = {f"{p.parent.parent.name}/{p.stem}" for p in FIXTURES.glob("*/errors/*.json")}
    assert found == {name for name, _, _ in CASES}
    for name in found:
        assert json.loads((FIXTURES / f"{name.replace('/', '/errors/')}.json").read_text())["_source"].startswith(
            "https://"
        )


@pytest.mark.parametrize(("name", "expected", "words"), CASES, ids=[c[0] for c in CASES])
def test_documented_error_is_classified(name: str, expected: type[UpstreamError], words: str) -> None:
    provider, _, case = name.partition("/")
    doc = json.loads((FIXTURES / provider / "errors" / f"{case}.json").read_text())
    reader = READERS.get(provider, openai_compat.read_error)
    err = error_from_status(doc["status"], json.dumps(doc["body"]).encode(), doc.get("headers") or {}, reader,
                            backend=provider, model="m")
    assert type(err) is expected, err.describe()
    assert words in err.message
    if expected is UpstreamBilling:
        # Plain words for the operator: the backend, what happened, what to do; and the whole backend is out.
        assert err.message.startswith(f"{provider}: ") and "top up the account" in err.message
        assert err.scope == "backend" and err.account_wide and err.may_fall_over and not err.retryable
    elif expected in (UpstreamModelNotFound, UpstreamBlocked):
        assert err.scope == "model" and err.may_fall_over and not err.retryable and not err.account_wide
    else:
        assert not err.may_fall_over  # a schema error every provider would give stays the client's
