"""Each provider's documented error body (tests/fixtures/PROVIDER/errors) lands on the right node of the tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from polyroute.adapters import anthropic, gemini_signatures, ollama, openai_compat
from polyroute.adapters.error_body import BodyReader
from polyroute.adapters.http import error_from_status
from polyroute.errors import (
    UpstreamAuthError,
    UpstreamBilling,
    UpstreamBlocked,
    UpstreamContextExceeded,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamParamRefused,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
READERS: dict[str, BodyReader] = {"anthropic": anthropic.read_error, "ollama": ollama.read_error,
                                  "dashscope": openai_compat.reader_for("dashscope", None),
                                  "kimi": openai_compat.reader_for("moonshot", None),
                                  "gemini": gemini_signatures.refusing_unsigned_history(openai_compat.read_error)}

CASES: list[tuple[str, type[UpstreamError], str]] = [
    # (fixture, class, words the operator reads)
    ("deepseek/402_insufficient_balance", UpstreamBilling, "account balance exhausted (402 Insufficient Balance)"),
    ("anthropic/400_credit_balance_too_low", UpstreamBilling, "credit balance too low"),
    ("anthropic/402_billing_error", UpstreamBilling, "billing problem on the account"),
    ("openai/429_insufficient_quota", UpstreamBilling, "quota exhausted (plan and billing)"),
    ("kimi/429_exceeded_current_quota_error", UpstreamBilling, "quota exceeded (plan and billing)"),
    # Kimi's 403 is an empty account, not a refused key; and its 429 can say the same in words.
    ("kimi/403_insufficient_balance", UpstreamBilling, "Forbidden (insufficient balance)"),
    ("kimi/429_suspended_insufficient_balance", UpstreamBilling, "suspended due to insufficient balance"),
    ("dashscope/400_arrearage", UpstreamBilling, "account in arrears"),
    ("glm/429_1113_insufficient_balance", UpstreamBilling, "balance exhausted or no resource package"),
    ("deepseek/400_model_not_exist", UpstreamModelNotFound, "Model Not Exist"),
    ("openai/404_model_not_found", UpstreamModelNotFound, "does not exist"),
    ("anthropic/404_not_found_model", UpstreamModelNotFound, "model: claude"),
    ("ollama/404_model_not_found", UpstreamModelNotFound, "not found"),
    ("openai/400_invalid_value", UpstreamRejected, "temperature"),
    # A region block of one model behind a relay: the model's, not the relay account's.
    ("openrouter/403_provider_region_block", UpstreamBlocked, "OpenAI: Provider returned error"),
    # Spend limits the organisation set, or its tier's monthly cap: the account's, until someone acts.
    ("anthropic/400_spend_limit_reached", UpstreamBilling, "organisation or workspace spend limit reached"),
    ("anthropic/429_enforced_spend_limit_reached", UpstreamBilling, "the usage tier's monthly spend cap reached"),
    ("zai/400_1211_unknown_model", UpstreamModelNotFound, "Unknown Model"),
    ("zai/429_1309_plan_expired", UpstreamBilling, "Coding Plan package expired"),
    # DashScope's per-minute limit in OpenAI's billing words: a rate limit there.
    ("dashscope/429_insufficient_quota_per_minute", UpstreamRateLimited, "You exceeded your current quota"),
    # A 402 that says when to come back: spend in flight, not an empty account.
    ("openrouter/402_in_flight_budget", UpstreamRateLimited, "In-flight spending budget"),
    # Moderation flagged the content: the client's to change, not sent on to another provider.
    ("openrouter/403_moderation_flagged", UpstreamRejected, "flagged (violence)"),
    ("anthropic/413_request_too_large", UpstreamRejected, "maximum allowed number of bytes"),
    # Thinking blocks the client's history changed or left out: the client's to fix, passed on as Claude said it.
    ("anthropic/400_thinking_bound_to_another_conversation", UpstreamRejected, "bound to a different conversation"),
    ("anthropic/400_thinking_block_expected", UpstreamRejected, "Expected `thinking` or `redacted_thinking`"),
    # A parameter of a valid request this model refuses: dropped for it, or the next model asked.
    ("openai/400_unsupported_value_temperature", UpstreamParamRefused, "does not support 0.2"),
    ("anthropic/400_temperature_deprecated", UpstreamParamRefused, "deprecated for this model"),
    ("kimi/400_temperature_fixed", UpstreamParamRefused, "only 1 is allowed"),
    ("zai/400_1210_temperature_illegal", UpstreamParamRefused, "parameter is illegal"),
    ("deepseek/400_tool_choice_in_thinking_mode", UpstreamParamRefused, "does not support this tool_choice"),
    ("deepseek/400_json_schema_unavailable", UpstreamParamRefused, "response_format type is unavailable"),
    ("openai/400_unknown_parameter_stream_options", UpstreamParamRefused, "Unknown parameter: 'stream_options'"),
    # Providers whose error bodies take other shapes: a list (Gemini), the fields at the top (Mistral).
    ("gemini/400_user_location_not_supported", UpstreamBlocked, "User location is not supported"),
    ("gemini/400_api_key_invalid", UpstreamAuthError, "API key not valid"),
    ("gemini/404_model_not_found", UpstreamModelNotFound, "models/gemini-pro is not found"),
    ("gemini/400_unknown_name_top_k", UpstreamParamRefused, 'Unknown name "top_k"'),
    # A tool call with no thought signature in a history Gemini 3 is sent: another candidate takes it as it is.
    ("gemini/400_function_call_missing_thought_signature", UpstreamParamRefused,
     "Function call is missing a thought_signature"),
    # A signature another Google endpoint made: the same model is asked again with Google's stand-ins.
    ("gemini/400_corrupted_thought_signature", UpstreamParamRefused, "Corrupted thought signature"),
    ("gemini/400_thought_signature_not_valid", UpstreamParamRefused, "Thought signature is not valid"),
    ("mistral/422_extra_stream_options", UpstreamParamRefused,
     "stream_options.include_usage: Extra inputs are not permitted"),
    ("mistral/400_invalid_model", UpstreamModelNotFound, "Invalid model: mistral-medium-3.5"),
    ("mistral/400_tool_call_id_format", UpstreamParamRefused, "Tool call id was"),
    ("fireworks/412_account_suspended", UpstreamBilling, "is suspended"),
    ("fireworks/404_model_not_found", UpstreamModelNotFound, "Model not found"),
    ("together/400_model_not_available", UpstreamModelNotFound, "Unable to access non-serverless model"),
    # A prompt past the context, in TGI's words (400) or the words of Together's table (403, not a refused key).
    ("together/400_input_validation", UpstreamContextExceeded, "`inputs` tokens + `max_new_tokens` must be"),
    ("together/403_context_length", UpstreamContextExceeded, "must be less than the context length"),
    # A relay's guardrail on the prompt: the request's content, not the account's key.
    ("openrouter/403_guardrail_block", UpstreamRejected, "prompt injection patterns detected"),
    # Z.ai: a usage cap that lifts at a time it gives (Beijing time); an account locked until its support acts.
    ("zai/429_1308_usage_limit", UpstreamRateLimited, "Usage limit reached for 5 hour"),
    ("zai/429_1112_account_locked", UpstreamBlocked, "account has been locked"),
    ("groq/498_capacity_exceeded", UpstreamRateLimited, "capacity_exceeded"),
    # A prompt past the model's window in words of their own: Gemini's (no code beyond INVALID_ARGUMENT), and
    # llama-server's error type.
    ("gemini/400_input_token_count_exceeds", UpstreamContextExceeded, "exceeds the maximum number of tokens allowed"),
    ("llamacpp/400_exceed_context_size", UpstreamContextExceeded, "exceeds the available context size"),
    # A request over one model's tokens per minute at Groq: another candidate takes it; the 413 is kept for the
    # client when none does.
    ("groq/413_request_too_large_tpm", UpstreamParamRefused, "on tokens per minute (TPM): Limit 12000"),
    # A tool call the model wrote and Groq could not parse: the model's failure (OpenAI's own is a 500 "The model
    # produced invalid content"), what it wrote kept.
    ("groq/400_tool_use_failed", UpstreamServerError, "Failed to call a function"),
    # Prompt-cache breakpoints a server takes no mark for: asked again without them, not the client's 400.
    ("openai/400_unrecognized_argument_cache_control", UpstreamParamRefused,
     "Unrecognized request argument supplied: cache_control"),
    ("anthropic/400_cache_control_extra_inputs", UpstreamParamRefused,
     "text.cache_control: Extra inputs are not permitted"),
    # A system message left where it sits for a Claude that takes it there, refused by the endpoint (Vertex AI, a
    # relay) or placed otherwise than the API reads its rule: the same model again with it at the top.
    ("anthropic/400_unexpected_role_system", UpstreamParamRefused, 'Unexpected role "system"'),
    ("anthropic/400_system_must_precede_assistant", UpstreamParamRefused, "role 'system' must precede"),
    # The binding of returned thinking the gateway asks for, with its beta, on an endpoint without the beta.
    ("anthropic/400_unexpected_beta_binding", UpstreamParamRefused, "for the `anthropic-beta` header"),
    # A beta the client asked for that the endpoint lacks: the same model again without exactly that beta.
    ("anthropic/400_unexpected_beta_client", UpstreamParamRefused, "`web-search-2025-03-05` for the `anthropic-beta`"),
    # Structured outputs an endpoint or model does not take: the next candidate answers.
    ("anthropic/400_output_config_format_extra_inputs", UpstreamParamRefused, "output_config.format: Extra inputs"),
    # Embeddings: Mistral's limit on a request's tokens taken together (a model with a larger one may take it), and
    # Gemini's on its inputs (the client's request to split; the plan refuses more than 100 before sending).
    ("mistral/400_too_many_tokens_in_batch", UpstreamContextExceeded, "Too many tokens in batch"),
    ("gemini/400_batch_embed_over_100", UpstreamRejected, "at most 100 requests can be in one batch"),
    # Overloaded or still loading: the same model later, another candidate now.
    ("anthropic/529_overloaded_error", UpstreamServerError, "Overloaded"),
    ("gemini/503_model_overloaded", UpstreamServerError, "The model is overloaded"),
    ("llamacpp/503_loading_model", UpstreamServerError, "Loading model"),
    # Rate limits, with the wait wherever they say it: a header, Google's RetryInfo, or their words.
    ("anthropic/429_rate_limit_error", UpstreamRateLimited, "would exceed your account's rate limit"),
    ("gemini/429_retry_info_delay", UpstreamRateLimited, "You exceeded your current quota"),
    ("gemini/429_free_tier_requests_per_day", UpstreamRateLimited, "generate_content_free_tier_requests"),
    ("openai/429_rate_limit_tpm_seconds", UpstreamRateLimited, "Please try again in 3.89s"),
    ("openai/429_rate_limit_tpm_milliseconds", UpstreamRateLimited, "Please try again in 174ms"),
    ("groq/429_tokens_per_day", UpstreamRateLimited, "on tokens per day (TPD)"),
    ("mistral/429_rate_limited_1300", UpstreamRateLimited, "Rate limit exceeded"),
    # OpenRouter: a request dearer than the credit left is this model's (a cheaper one answers); no credit is the
    # account's.
    ("openrouter/402_can_only_afford", UpstreamBilling, "beyond what the account's plan or credit covers"),
    ("openrouter/402_insufficient_credits", UpstreamBilling, "This account never purchased credits"),
    # xAI's empty team, in words only, with a 429 or a 403: not a rate limit, not a refused key.
    ("xai/429_team_credits_exhausted", UpstreamBilling, "used all available credits"),
    ("xai/403_team_has_no_credits", UpstreamBilling, "doesn't have any credits or licenses yet"),
    # A prompt past the window with no code of its own: a larger window is tried.
    ("deepseek/400_maximum_context_length", UpstreamContextExceeded, "maximum context length is 131072 tokens"),
    ("vllm/400_maximum_context_length", UpstreamContextExceeded, "maximum context length is 6048 tokens"),
    # A 404 whose words name the model as missing (vLLM, Ollama's /v1): the model's, not a path not served.
    ("vllm/404_model_does_not_exist", UpstreamModelNotFound, "does not exist"),
    ("ollama-v1/404_model_not_found", UpstreamModelNotFound, "not found, try pulling it first"),
    ("azure/400_content_filter", UpstreamRejected, "content management policy"),
    ("anthropic/400_prompt_too_long", UpstreamContextExceeded, "prompt is too long: 208310 tokens"),
    ("anthropic/500_api_error_overloaded", UpstreamServerError, "Overloaded"),
    ("bedrock/429_throttling_too_many_tokens", UpstreamRateLimited, "Too many tokens, please wait"),
    # An output cap over this model's own: the next candidate, with a higher cap, takes the request as it is.
    ("openai/400_max_tokens_too_large", UpstreamParamRefused, "This model supports at most 4096 completion tokens"),
    ("anthropic/400_max_tokens_over_model_limit", UpstreamParamRefused, "maximum allowed number of output tokens"),
    ("volcengine/400_max_completion_tokens_above_maximum", UpstreamParamRefused, "integer above maximum value"),
    # A project key without one model: that model out, the backend's others still served.
    ("openai/403_project_has_no_access_to_model", UpstreamModelNotFound, "does not have access to model"),
    # OpenRouter's free models' daily cap, kept out until the reset it passes on; without it, no wait.
    ("openrouter/429_free_models_per_day", UpstreamRateLimited, "free-models-per-day"),
    ("openrouter/429_free_models_per_day_high_balance", UpstreamRateLimited, "free-models-per-day-high-balance"),
    ("nvidia/429_too_many_requests", UpstreamRateLimited, "Too Many Requests"),
    ("kimi/429_max_organization_concurrency", UpstreamRateLimited, "max organization concurrency"),
    ("kimi/429_project_tpm_rate_limit", UpstreamRateLimited, "project TPM rate limit"),
    ("bedrock/400_input_too_long", UpstreamContextExceeded, "Input is too long for requested model"),
    # A model the key's tier has no quota of: that model out until the plan changes, not retried in seconds.
    ("gemini/429_free_tier_limit_0", UpstreamBilling, "429 You exceeded your current quota"),
    ("azure/429_token_rate_limit_retry_after_words", UpstreamRateLimited, "exceeded token rate limit"),
    ("gemini/503_model_capacity_exhausted", UpstreamServerError, "No capacity available for model"),
    # A model the account may not use: that model out, the backend's others still served.
    ("dashscope/403_access_denied_unpurchased", UpstreamModelNotFound, "Access to model denied"),
    ("gemini/400_no_access_to_model", UpstreamModelNotFound, "You don't have access to this model"),
]
REFUSED_PARAM = {"openai/400_unsupported_value_temperature": "temperature", "anthropic/400_temperature_deprecated":
                 "temperature", "kimi/400_temperature_fixed": "temperature", "zai/400_1210_temperature_illegal":
                 "temperature", "deepseek/400_tool_choice_in_thinking_mode": "tool_choice",
                 "deepseek/400_json_schema_unavailable": "response_format",
                 "openai/400_unknown_parameter_stream_options": "stream_options",
                 "gemini/400_unknown_name_top_k": "top_k",
                 "gemini/400_function_call_missing_thought_signature": "messages",
                 "gemini/400_corrupted_thought_signature": "thought_signature",
                 "gemini/400_thought_signature_not_valid": "thought_signature",
                 "mistral/422_extra_stream_options": "stream_options", "mistral/400_tool_call_id_format": "messages",
                 "groq/413_request_too_large_tpm": None,
                 "openai/400_unrecognized_argument_cache_control": "cache_control",
                 "anthropic/400_cache_control_extra_inputs": "cache_control",
                 "anthropic/400_unexpected_role_system": "system_placement",
                 "anthropic/400_system_must_precede_assistant": "system_placement",
                 "anthropic/400_unexpected_beta_binding": "block_binding",
                 "anthropic/400_unexpected_beta_client": "anthropic_beta",
                 "anthropic/400_output_config_format_extra_inputs": "response_format",
                 "openai/400_max_tokens_too_large": "max_tokens", "anthropic/400_max_tokens_over_model_limit":
                 "max_tokens", "volcengine/400_max_completion_tokens_above_maximum": "max_tokens"}


def test_a_usage_cap_that_lifts_later_keeps_the_model_out_until_then() -> None:
    """Z.ai's reset time has no zone and is Beijing time: read as UTC it would keep the model out 8 hours too long."""
    from datetime import UTC, datetime, timedelta, timezone

    lifts = datetime.now(UTC) + timedelta(minutes=30)
    said = lifts.astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S")
    body = json.dumps({"error": {"code": "1308", "message": f"Usage limit reached for 5 hour. Your limit will "
                                                            f"reset at {said}"}}).encode()
    err = error_from_status(429, body, {}, openai_compat.read_error, backend="zai", model="glm")
    assert isinstance(err, UpstreamRateLimited) and err.retry_after is not None
    assert 29 * 60 <= err.retry_after <= 30 * 60


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
        scope = doc.get("_scope", "backend")  # "model": the account can still pay for a smaller request
        assert err.scope == scope and err.account_wide == (scope == "backend")
        assert err.may_fall_over and not err.retryable
    elif expected is UpstreamBlocked and not name.startswith("openrouter/"):
        # A region the whole API refuses (Gemini's): the backend's, as for a refused key.
        assert err.scope == "backend" and err.may_fall_over and not err.retryable
    elif expected in (UpstreamModelNotFound, UpstreamBlocked):
        assert err.scope == "model" and err.may_fall_over and not err.retryable and not err.account_wide
    elif expected is UpstreamParamRefused:
        assert isinstance(err, UpstreamParamRefused) and err.param == REFUSED_PARAM[name]
        assert err.may_fall_over and not err.retryable and err.scope == "model"
        assert err.status == (413 if doc["status"] == 413 else 400)
    elif expected is UpstreamAuthError:
        assert err.scope == "backend" and err.account_wide and err.may_fall_over
    elif expected is UpstreamContextExceeded:
        # A model with a larger window may take it; the client hears OpenAI's 400, whatever status the provider sent.
        assert err.may_fall_over and err.status == 400 and err.code == "context_length_exceeded"
    elif expected is UpstreamServerError:
        # The model's malformed output: the same model again or the next one, and the operator reads what it wrote.
        assert err.scope == "model" and err.may_fall_over and err.retryable
        if "failed_generation" in doc["body"]["error"]:
            assert doc["body"]["error"]["failed_generation"][:40] in err.message
    elif expected is UpstreamRateLimited:
        wait = float(doc["headers"]["retry-after"]) if doc.get("headers") else doc.get("_retry_after")
        assert err.scope == "model" and err.may_fall_over and err.retry_after == (
            None if wait is None else pytest.approx(wait))
    else:
        assert not err.may_fall_over  # a schema error every provider would give stays the client's
        assert err.status == (413 if doc["status"] == 413 else 400)


def test_retry_after_ms_is_read_before_retry_after() -> None:
    """openai-python reads ``retry-after-ms`` first; Azure OpenAI and other compatibles send it."""
    from polyroute.adapters.http import retry_after_of

    assert retry_after_of({"retry-after-ms": "20000", "retry-after": "1"}) == 20.0
    assert retry_after_of({"retry-after-ms": "nonsense", "retry-after": "7"}) == 7.0
    assert retry_after_of({"retry-after-ms": "inf", "retry-after": "2"}) == 2.0
    assert retry_after_of({"retry-after-ms": "-5"}) == 0.0
    assert retry_after_of({}) is None
    body = json.dumps({"error": {"message": "slow down", "type": "rate_limit_error"}}).encode()
    err = error_from_status(429, body, {"retry-after-ms": "1500"}, openai_compat.read_error, backend="b", model="m")
    assert isinstance(err, UpstreamRateLimited) and err.retry_after == 1.5


@pytest.mark.parametrize(("provider", "case"), [("moonshot", "rejected"), ("zai", None), ("dashscope", None)])
def test_moderation_has_one_code_whatever_the_provider_calls_it(provider: str, case: str | None) -> None:
    """Moonshot's ``content_filter`` type, Z.ai's 1301, DashScope's ``data_inspection_failed``: one code for clients."""
    bodies = {
        "zai": {"error": {"code": "1301", "message": "System detected potentially unsafe or sensitive content"}},
        "dashscope": {"error": {"code": "data_inspection_failed", "type": "data_inspection_failed",
                                "message": "Input data may contain inappropriate content."}},
    }
    body = json.loads((FIXTURES / "moonshot" / "errors.json").read_text())[case]["body"] if case else bodies[provider]
    err = error_from_status(400, json.dumps(body).encode(), {}, openai_compat.read_error, backend=provider, model="m")
    assert type(err) is UpstreamRejected and err.code == "content_policy_violation"
    assert not err.may_fall_over and body["error"]["message"] in err.message


@pytest.mark.parametrize(("error", "expected", "status"), [
    ({"code": 502, "message": "Provider disconnected"}, UpstreamServerError, 502),  # OpenRouter: a status as code
    ({"code": 429, "message": "You are being rate limited"}, UpstreamRateLimited, 429),
    ({"code": "1302", "message": "High concurrency usage of this API"}, UpstreamRateLimited, 429),  # Z.ai
    ({"code": "1113", "message": "Your account is in arrears"}, UpstreamBilling, 500),  # Z.ai
    ({"type": "engine_overloaded_error", "message": "The engine is currently overloaded"}, UpstreamRateLimited, 429),
    ({"code": None, "type": "server_error", "message": "The server had an error"}, UpstreamServerError, 500),
    # OpenAI's overload sent after the 200 (https://github.com/openai/codex/issues/43337): a server error, not a
    # rate limit of the key.
    ({"type": "service_unavailable_error", "code": "server_is_overloaded",
      "message": "Our servers are currently overloaded. Please try again later.", "param": None},
     UpstreamServerError, 500),
])
def test_an_error_inside_a_200_stream_is_the_error_its_code_names(
    error: dict[str, object], expected: type[UpstreamError], status: int
) -> None:
    from polyroute.adapters.http import error_in_band

    err = error_in_band(json.dumps({"error": error}).encode(), openai_compat.read_error, backend="b", model="m")
    assert type(err) is expected and err.upstream_status == status and str(error["message"]) in err.message


@pytest.mark.parametrize("code", ["\u00b2", "9" * 5000, "0", "42", 429.0, ["x"]])
def test_an_error_event_with_an_odd_code_is_still_an_upstream_error(code: object) -> None:
    from polyroute.adapters.http import error_in_band

    body = json.dumps({"error": {"code": code, "message": "odd"}}).encode()
    err = error_in_band(body, openai_compat.read_error, backend="b", model="m")
    assert isinstance(err, UpstreamError) and err.may_fall_over


@pytest.mark.parametrize(("body", "param", "always"), [
    ({"error": {"message": "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default "
                           "(1) value is supported.", "param": "temperature", "code": "unsupported_value"}},
     "temperature", True),
    ({"error": {"message": "Unsupported value: 'reasoning_effort' does not support 'minimal' with this model.",
                "param": "reasoning_effort", "code": "unsupported_value"}}, "reasoning_effort", False),
    ({"error": {"message": "Unsupported parameter: 'stop' is not supported with this model.", "param": "stop",
                "code": "unsupported_parameter"}}, "stop", True),
    ({"error": {"code": "1210", "message": "The temperature parameter is illegal."}}, "temperature", False),
])
def test_a_refusal_is_remembered_only_when_it_is_about_every_value(
    body: dict[str, object], param: str, always: bool
) -> None:
    err = error_from_status(400, json.dumps(body).encode(), {}, openai_compat.read_error, backend="b", model="m")
    assert isinstance(err, UpstreamParamRefused) and (err.param, err.always) == (param, always)


def test_words_about_a_parameter_no_model_goes_without_are_the_clients_error() -> None:
    body = {"error": {"code": "1210", "message": "The messages parameter is illegal."}}
    err = error_from_status(400, json.dumps(body).encode(), {}, openai_compat.read_error, backend="b", model="m")
    assert type(err) is UpstreamRejected and not err.may_fall_over


def test_a_wait_said_in_a_429s_words_is_read_when_no_header_says_it() -> None:
    """Gemini: "Please retry in 16.614023621s." (https://github.com/continuedev/continue/issues/9662)."""
    body = json.dumps([{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                  "message": "You exceeded your current quota. Please retry in 16.614023621s."}}])
    err = error_from_status(429, body.encode(), {}, openai_compat.read_error, backend="gemini", model="m")
    assert isinstance(err, UpstreamRateLimited) and err.retry_after == pytest.approx(16.614023621)
    headed = error_from_status(429, body.encode(), {"retry-after": "3"}, openai_compat.read_error, backend="g",
                               model="m")
    assert isinstance(headed, UpstreamRateLimited) and headed.retry_after == 3.0


def test_an_error_in_a_whole_answers_body_is_the_error_its_code_names() -> None:
    """OpenRouter's 200 with an error and no choices: before, "answer has no choices", its words and code lost."""
    doc = json.loads((FIXTURES / "openrouter" / "endings" / "error_in_whole_answer.json").read_text())
    with pytest.raises(UpstreamRateLimited) as info:
        openai_compat.whole_answer({k: v for k, v in doc.items() if not k.startswith("_")}, "openrouter", "m")
    # The provider's own words from metadata.raw follow the relay's (Cloudflare's 1015 is its rate limit).
    assert info.value.message == "Kluster: Provider returned error: error code: 1015" and info.value.scope == "model"
    assert info.value.upstream_status == 429


def test_a_relays_provider_error_keeps_the_providers_own_words_and_code() -> None:
    """OpenRouter's "Provider returned error" carries the provider's body in ``metadata.raw``: its words reach the
    operator and the client, and its code is read like the provider's own (a context error tries a larger window)."""
    def read(status: int, body: object) -> UpstreamError:
        return error_from_status(status, json.dumps(body).encode(), {}, openai_compat.read_error, backend="or",
                                 model="m")

    doc = json.loads((FIXTURES / "openrouter" / "errors" / "403_provider_region_block.json").read_text())
    err = read(doc["status"], doc["body"])
    assert isinstance(err, UpstreamBlocked) and "Country, region, or territory not supported" in str(err)
    raw = {"error": {"message": "This model's maximum context length is 8192 tokens",
                     "code": "context_length_exceeded"}}
    body: dict[str, Any] = {"error": {"message": "Provider returned error", "code": 400,
                                      "metadata": {"provider_name": "Azure", "raw": json.dumps(raw)}}}
    err = read(400, body)
    assert isinstance(err, UpstreamContextExceeded) and "maximum context length" in str(err)
    body["error"]["metadata"] = {"provider_name": "Azure", "raw": "upstream connect error"}
    assert "upstream connect error" in str(read(502, body))


@pytest.mark.parametrize("name", ["gemini/429_retry_info_delay", "openai/429_rate_limit_tpm_seconds",
                                  "groq/429_tokens_per_day", "xai/429_team_credits_exhausted",
                                  "openrouter/402_insufficient_credits", "vllm/400_maximum_context_length",
                                  "openrouter/429_free_models_per_day"])
def test_an_error_sent_inside_a_stream_is_its_status_twins_error(name: str) -> None:
    """The same body as a ``data:`` event after a 200 (OpenAI-compatible servers and relays send errors that way once
    the stream has begun): the same class, scope and wait as when it came with its status. vLLM puts its error's
    top-level fields under ``error`` in a stream (its ``create_streaming_error_response``)."""
    provider, _, case = name.partition("/")
    doc = json.loads((FIXTURES / provider / "errors" / f"{case}.json").read_text())
    data = json.dumps(doc["body"] if "error" in doc["body"] else {"error": doc["body"]})
    twin = error_from_status(doc["status"], data.encode(), {}, openai_compat.read_error, backend="b", model="m")
    events = openai_compat._Events("b", "m")
    with pytest.raises(UpstreamError) as raised:
        events.on("message", data)
    err = raised.value
    assert type(err) is type(twin) and err.scope == twin.scope and err.may_fall_over == twin.may_fall_over
    assert getattr(err, "retry_after", None) == getattr(twin, "retry_after", None)


def test_a_429_says_when_in_the_reset_header_of_the_limit_it_used_up() -> None:
    """OpenAI's and Groq's x-ratelimit-reset-* (https://platform.openai.com/docs/guides/rate-limits), in Go's
    durations: read for a 429 with no Retry-After and no wait in its words, for the limits at 0 only."""
    body = json.dumps({"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}}).encode()
    limits = {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s",
              "x-ratelimit-remaining-requests": "99", "x-ratelimit-reset-requests": "120ms"}

    def wait(headers: dict[str, str]) -> float | None:
        err = error_from_status(429, body, headers, openai_compat.read_error, backend="b", model="m")
        assert isinstance(err, UpstreamRateLimited)
        return err.retry_after

    assert wait(limits) == 360.0
    assert wait({**limits, "x-ratelimit-remaining-requests": "0"}) == 360.0  # the longer of the two
    assert wait({**limits, "retry-after": "2"}) == 2.0
    assert wait({**limits, "x-ratelimit-remaining-tokens": "5"}) is None
    assert wait({**limits, "x-ratelimit-reset-tokens": "soon"}) is None


@pytest.mark.parametrize(("text", "seconds"), [
    ("6m0s", 360.0), ("174ms", 0.174), ("9m38.016s", 578.016), ("26s", 26.0), ("1h2m3.5s", 3723.5),
    ("16.614023621s", 16.614023621), ("", None), ("5", None), ("s", None), ("3 s", None), ("2d", None),
    ("1s and more", None),
])
def test_a_duration_as_providers_write_one(text: str, seconds: float | None) -> None:
    from polyroute.adapters.error_body import duration

    assert duration(text) == (None if seconds is None else pytest.approx(seconds))


def test_a_relays_daily_cap_keeps_the_model_out_until_the_reset_it_passes_on() -> None:
    """OpenRouter's ``metadata.headers``: X-RateLimit-Reset in epoch milliseconds, read only for a limit used up."""
    import time

    doc = json.loads((FIXTURES / "openrouter" / "errors" / "429_free_models_per_day.json").read_text())
    said = doc["body"]["error"]["metadata"]["headers"]

    def wait(reset: object, remaining: str = "0") -> float | None:
        said.update({"X-RateLimit-Reset": reset, "X-RateLimit-Remaining": remaining})
        err = error_from_status(429, json.dumps(doc["body"]).encode(), {}, openai_compat.read_error, backend="or",
                                model="m")
        assert isinstance(err, UpstreamRateLimited) and err.scope == "model"
        return err.retry_after

    in_an_hour = str(int((time.time() + 3600) * 1000))
    assert wait(in_an_hour) == pytest.approx(3600, abs=5)
    assert wait(in_an_hour, remaining="3") is None
    assert wait("tomorrow") is None and wait(None) is None and wait("nan") is None
