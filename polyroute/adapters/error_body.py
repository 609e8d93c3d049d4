"""What an upstream's error body says: the shapes providers send errors in, and the codes and words that tell
which failure it is (a region block, a context-length refusal, an account that cannot pay, a model that does not
exist, a parameter this model refuses, when to try again). ``json_error_reader`` reads OpenAI's shape and the
shapes of most compatible providers; adapters with a format of their own read theirs and use the same codes.
``polyroute.adapters.http`` turns what is read into the error tree's classes.
"""

from __future__ import annotations

import datetime
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson

from polyroute.errors import Scope
from polyroute.refusals import DROPPABLE

# Beyond any sane clamp; keeps the value a finite float for whatever does arithmetic with it.
RETRY_AFTER_CEILING = 1e9


def duration(text: str) -> float | None:
    """Seconds in a duration as Go and protobuf write one ("6m0s", "9m38.016s", "174ms", "26s", "1h2m"); None if
    it is not one."""
    parts = _DURATION_PART.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    seconds = sum(float(n) / 1000 if u == "ms" else float(n) * _UNIT_SECONDS[u] for n, u in parts)
    return min(seconds, RETRY_AFTER_CEILING) if math.isfinite(seconds) else None


_DURATION_PART = re.compile(r"(\d{1,9}(?:\.\d{1,12})?)(ms|h|m|s)")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What an upstream's error body says, read by the adapter that knows its format."""

    message: str
    code: str | None = None
    blocked: bool = False
    context_exceeded: bool = False
    auth: bool = False
    # The account cannot pay: balance exhausted, quota used up, arrears.
    billing: bool = False
    # The provider does not know the model (retired, renamed, mistyped).
    model_missing: bool = False
    # The provider's moderation flagged this request's content: the client's to change, not a fault of ours.
    content_refused: bool = False
    # Set when the provider says which scope the failure has (a region block of one model only).
    scope: Scope | None = None
    # This model refuses a parameter of a valid request (``polyroute.refusals``), and which, when it says;
    # ``refused_always``: whatever its value (not only the value this request gave it).
    model_refuses: bool = False
    refused_param: str | None = None
    refused_always: bool = False
    # The request field the error is about, where the upstream names it (OpenAI's ``param``): the client's to fix.
    param: str | None = None
    # The model wrote what the provider could not parse (a tool call): the model's failure on a valid request,
    # as OpenAI's own 500 "The model produced invalid content" is, whatever status the provider sent.
    bad_output: bool = False
    # When to try again, where the body says it in a field of its own (Google's RetryInfo), in seconds.
    retry_after: float | None = None


BodyReader = Callable[[int, bytes], ErrorInfo]


def json_error_reader(status: int, body: bytes) -> ErrorInfo:
    """Read ``{"error": {"message", "type", "code"}}`` (OpenAI and most compatibles), and the shapes others
    send: the same in a one-element list with Google's ``status`` and ``details[].reason`` (Gemini's
    OpenAI-compatible endpoint), the error's fields at the top (Mistral), or ``{"detail": ...}`` (FastAPI
    servers, Mistral's validation errors)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:300].decode("utf-8", "replace").strip()
        return ErrorInfo(message=text or f"HTTP {status}")
    err = _error_object(doc)
    if isinstance(err, str):  # xAI's {"code", "error": "words"}: an empty account is said in words only
        return ErrorInfo(message=err, billing=_NO_CREDITS.search(err) is not None)
    if err is None:
        return ErrorInfo(message=f"HTTP {status}")
    code = err.get("code")
    code_s = str(code) if code is not None else None
    etype = str(err.get("type") or "")
    message = _text_of(err.get("message") or err.get("detail") or err.get("title")) or etype or f"HTTP {status}"
    meta = err.get("metadata")
    relayed = _relayed(meta)  # a relay's "Provider returned error": the provider's own code and words, if it sent them
    if relayed[1]:
        message = f"{message}: {relayed[1]}"
    # Google's words for the kind of error, and the reasons in its details ("API_KEY_INVALID").
    google = {str(err.get("status") or ""), *_reasons(err.get("details"))} - {""}
    names = {code_s, etype, *google, relayed[0]} - {None}
    if names & REFUSAL_CODES:
        # The provider's moderation flagged the content: one code for every provider, its words kept.
        return ErrorInfo(message=message, code=REFUSED, content_refused=True)
    blocked = bool(names & BLOCK_CODES) or _LOCATION_BLOCK.search(message) is not None
    context = bool(names & CONTEXT_CODES)
    auth = bool(names & AUTH_CODES)
    billing = bool(names & BILLING_CODES) or _SUSPENDED.search(message) is not None or (
        _NO_CREDITS.search(message) is not None)
    # DeepSeek answers an unknown model with a 400 whose only distinct part is this exact message; vLLM's and
    # Ollama's OpenAI-compatible servers a 404 with no code of their own.
    missing = bool(names & MODEL_MISSING_CODES) or (status == 400 and message == "Model Not Exist") or (
        status == 404 and ("NOT_FOUND" in names or _NO_SUCH_MODEL.search(message) is not None)) or (
        status == 400 and _NO_MODEL_ACCESS.search(message) is not None)
    code_s = code_s or next(iter(sorted(google)), None)
    # Moonshot names its billing error only in ``type``: keep that as the code so its words are found.
    code_s = etype if billing and code_s not in BILLING_CODES else code_s
    scope: Scope | None = None
    if status == 402 and (afford := _AFFORDS.search(message)) is not None and int(afford.group(1)) > 0:
        # The account can pay for less: a cheaper model, or fewer max_tokens, still answers (OpenRouter reserves
        # the model's whole output allowance when max_tokens is not sent). This model's, not the account's.
        scope = "model"
    if status == 429 and "RESOURCE_EXHAUSTED" in names and _NO_QUOTA_ON_TIER.search(message):
        # Gemini's quota of 0 for this model on the key's tier: no wait lets it in, the plan has to change; the
        # key's other models still answer.
        billing, scope = True, "model"
    if status == 403 and isinstance(meta, dict) and "flagged_input" in meta:
        # OpenRouter's moderation flagged the input for this model: the request's content, refused
        # (https://openrouter.ai/docs/api-reference/errors, read 2026-12-07). Not our account's fault,
        # and not to be sent on to another provider to get past the moderation.
        reasons = meta.get("reasons")
        said = f" ({', '.join(map(str, reasons))})" if isinstance(reasons, list) and reasons else ""
        return ErrorInfo(message=f"{message}{said}", code=REFUSED, content_refused=True)
    if status == 403 and _GUARDRAIL.search(message):
        # A relay's guardrail or moderation on the prompt (OpenRouter answers 403 for "insufficient permissions,
        # guardrail block, or moderation flag", https://openrouter.ai/docs/api/errors): the request's content,
        # not the account's key.
        return ErrorInfo(message=message, code=REFUSED, content_refused=True)
    if isinstance(meta, dict) and "provider_name" in meta and "raw" in meta:
        # A relay (OpenRouter) passing on the refusal of the provider behind this model: it is about
        # that model, not our account with the relay; a 403 from there is that provider's block.
        scope = "model"
        blocked = blocked or status == 403
        message = f"{meta['provider_name']}: {message}"
    refusal = refusal_of(code_s, err.get("param"), message)
    # A request over one model's tokens per minute (Groq's 413 with OpenAI's rate-limit code): no wait lets it
    # in, and the model is not at fault for smaller ones; another candidate may take it.
    too_large = status == 413 and "rate_limit_exceeded" in names
    bad_output = bool(names & BAD_OUTPUT_CODES)
    if bad_output and isinstance(wrote := err.get("failed_generation"), str) and wrote:
        message = f"{message} (failed_generation: {wrote})"  # what the model wrote, for the operator
    return ErrorInfo(
        message=message, code=code_s, blocked=blocked, context_exceeded=context, auth=auth,
        billing=billing, model_missing=missing, scope=scope, model_refuses=refusal is not None or too_large,
        refused_param=refusal.param if refusal else None, refused_always=bool(refusal and refusal.always),
        param=param if isinstance(param := err.get("param"), str) and _FIELD.fullmatch(param) else None,
        bad_output=bad_output, retry_after=_retry_delay(err.get("details"), meta),
    )


# A request field as an upstream names one in ``param`` (``messages[1].content``, ``tools[0].function.name``).
_FIELD = re.compile(r"[A-Za-z_][\w.\[\]-]{0,199}")
# OpenAI's codes for a parameter a model does not take, with the parameter in ``param``.
REFUSAL_CODES_OF_PARAMS = frozenset({"unsupported_parameter", "unsupported_value"})
# Other providers' words for the same, the parameter named where they name it. Sources: OpenAI's message
# (https://github.com/johny-b/llmcomp/issues/69); Claude from Opus 4.7 and Sonnet 4.6 on ("`temperature` is
# deprecated for this model", https://platform.claude.com/docs/en/about-claude/models/migration-guide and
# https://github.com/The-PR-Agent/pr-agent/issues/2456); Kimi K2.6 ("invalid temperature: only 1 is allowed for
# this model", https://github.com/lobehub/lobehub/issues/14122); Z.ai ("The temperature parameter is illegal",
# https://github.com/theopenco/llmgateway/pull/3268); GPT-5.5's tools with reasoning_effort
# (https://github.com/openai/openai-openapi/issues/541); DeepSeek and Kimi in thinking mode
# (https://github.com/deepseek-ai/DeepSeek-V3/issues/1376, https://github.com/BerriAI/litellm/pull/37470),
# DeepSeek's json_schema (https://github.com/UKGovernmentBEIS/inspect_ai/issues/4916) and its reasoning_content
# history (https://github.com/anomalyco/opencode/issues/24722).
# Each: the words, the parameter they are about (None: the one the words name, which must then be one a model
# may answer without, or the words are taken for a plain client error), and whether they refuse it whatever
# its value (remembered for later requests) or only the value this request gave it.
_REFUSED_WORDS: tuple[tuple[re.Pattern[str], str | None, bool], ...] = (
    # Prompt-cache breakpoints, wherever a server names them (Azure's "Unrecognized request argument supplied:
    # cache_control", Mistral's "messages.0.content.0.cache_control: Extra inputs are not permitted", a relay's
    # "`cache_control.ttl: 1h` is not supported"): all of them are taken off (polyroute.cache_marks).
    (re.compile(r"\bcache_control\b.{0,80}?(?:not (?:supported|permitted|allowed)|unknown|unrecognized|unexpected|"
                r"cannot find field|extra (?:fields|inputs))|(?:unknown|unrecognized|unsupported|unexpected|extra|"
                r"additional)\b.{0,60}?\bcache_control\b", re.I | re.S), "cache_control", True),
    (re.compile(r"Unsupported parameter: '(\w+)'"), None, True),
    # An older OpenAI-compatible server (and Azure's older API versions) on a field it does not know.
    (re.compile(r"Unrecognized request arguments? supplied: (\w+)"), None, True),
    # Gemini's OpenAI-compatible endpoint on a field it has no place for
    # (https://github.com/MinLL/SkyrimNet-GamePlugin/issues/77).
    (re.compile(r'Unknown name \\?"(\w+)\\?": Cannot find field'), None, True),
    # Mistral's own rule for tool-call ids (https://github.com/karthink/gptel/issues/1203): a history written
    # with another provider's ids; another candidate takes it as it is.
    (re.compile(r"Tool call id was \S+ but must be", re.I), "messages", False),
    (re.compile(r"\bstream_options\b.{0,80}\b(?:not (?:supported|permitted|allowed)|unknown|unrecognized|"
                r"extra (?:fields|inputs))|(?:unknown|unrecognized|unsupported|extra)\b.{0,40}\bstream_options\b",
                re.I), "stream_options", True),
    # A server that validates its body strictly (Mistral, FastAPI servers) on a field it does not take, as
    # its validation error reads once written as "field: reason" (https://github.com/openai/openai-agents-python/issues/442).
    (re.compile(r"\b(\w+)(?:\.\w+)*: Extra inputs are not permitted"), None, True),
    (re.compile(r"Unsupported value: '(\w+)'.{0,80}Only the default"), None, True),
    (re.compile(r"Unsupported value: '(\w+)'"), None, False),
    (re.compile(r"`(\w+)` is deprecated for this model"), None, True),
    (re.compile(r"invalid (\w+): only .{1,40} (?:is|are) allowed for this model", re.I), None, True),
    (re.compile(r"The (\w+) parameter is illegal"), None, False),  # Z.ai: a value out of its range
    (re.compile(r"tools with reasoning_effort are not supported", re.I), "reasoning_effort", True),
    # Claude on thinking the gateway asked for from reasoning_effort (polyroute.adapters.claude_effort), should a
    # model's rule differ from its documented one: a budget where only adaptive thinking is taken ('"thinking.type.
    # enabled" is not supported for this model', the extended thinking page, quoted in
    # https://github.com/openclaw/openclaw/issues/91805), thinking turned off where it cannot be (the same issue), an
    # effort level the model lacks ("output_config.effort 'xhigh' is not supported when thinking is disabled on this
    # model", https://github.com/logancyang/obsidian-copilot/issues/2843), thinking with a forced tool call
    # ("Thinking may not be enabled when tool_choice forces tool use", https://github.com/run-llama/llama_index/
    # issues/19641), and a sampler with thinking on ("`temperature` may only be set to 1 when thinking is enabled",
    # https://github.com/MartialBE/one-hub/issues/529). A client's own ``thinking`` is not reasoning_effort: the
    # request goes to another candidate.
    (re.compile(r'"?thinking\.type\.enabled"? is not supported', re.I), "reasoning_effort", True),
    (re.compile(r'"?thinking\.type\.disabled"? is not supported|output_config\.effort\b.{0,80}?\b(?:not supported|'
                r"not valid|invalid)|Thinking may not be enabled when tool_choice forces tool use", re.I | re.S),
     "reasoning_effort", False),
    (re.compile(r"`?(\w+)`? may only be set to .{1,40}? when thinking is enabled", re.I), None, False),
    (re.compile(r"does not support this tool_choice|tool_choice '?\w+'? is incompatible with thinking|"
                r"forced tool (?:use|choice)", re.I), "tool_choice", False),
    # Claude from 4.6 on: a conversation that ends with the assistant's turn (a prefill, a continued answer)
    # (https://github.com/strands-agents/sdk-python/issues/1694): a candidate that takes the history as it is.
    (re.compile(r"does not support assistant message prefill|Prefilling assistant messages is not supported",
                re.I), "messages", False),
    (re.compile(r"response_format type is unavailable", re.I), "response_format", False),
    # An output cap over this model's own (not past its window): a model with a higher cap takes the request as it is.
    # OpenAI's "max_tokens is too large: 8192. This model supports at most 4096 completion tokens"
    # (https://github.com/algorithmicsuperintelligence/optillm/issues/4), Claude's "max_tokens: 10000 > 4096, which is
    # the maximum allowed number of output tokens for ..." (https://github.com/ChatGPTNextWeb/NextChat/issues/4964),
    # Volcengine's "The parameter `max_completion_tokens` specified in the request are not valid: integer above
    # maximum value" (https://github.com/Gitlawb/openclaude/issues/331). Never dropped: it bounds the answer.
    (re.compile(r"max_tokens is too large: \d+\. This model supports at most|max_tokens: \d+ > \d+, which is the "
                r"maximum allowed number of output tokens|`?max_(?:completion_)?tokens`? specified in the request are "
                r"not valid: integer above maximum value", re.I), "max_tokens", False),
    # Claude: "stop_sequences: each stop sequence must contain non-whitespace" (https://github.com/BerriAI/litellm/issues/3286)
    (re.compile(r"stop sequence must contain non-whitespace", re.I), "stop", False),
    (re.compile(r"reasoning_content\b.{0,60}\b(?:must be passed back|missing)|missing reasoning_content", re.I),
     "messages", False),
)


@dataclass(frozen=True, slots=True)
class Refusal:
    param: str | None
    always: bool  # whatever the parameter's value, not only this request's


def _relayed(meta: object) -> tuple[str | None, str]:
    """The code and message of the provider's own error a relay passes on in ``metadata.raw`` (OpenRouter's
    ProviderErrorMetadata: ``{provider_name, raw}``, raw being the provider's body as text or JSON,
    https://openrouter.ai/docs/api/reference/errors-and-debugging); nothing when there is none."""
    if not isinstance(meta, dict) or "provider_name" not in meta or (raw := meta.get("raw")) in (None, ""):
        return None, ""
    doc: object = raw
    if isinstance(raw, str):
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None, raw[:300].strip()
    inner = _error_object(doc)
    if isinstance(inner, str):
        return None, inner[:300]
    if inner is None:
        return None, ""
    code = inner.get("code") if inner.get("code") is not None else inner.get("type")
    return (str(code) if code is not None else None), _text_of(inner.get("message") or inner.get("detail"))[:300]


def _error_object(doc: object) -> dict[str, Any] | str | None:
    """The object that holds an error's fields, wherever a provider puts it."""
    if isinstance(doc, list) and len(doc) == 1:  # Gemini's OpenAI-compatible endpoint: [{"error": {...}}]
        doc = doc[0]
    if not isinstance(doc, dict):
        return None
    err = doc.get("error")
    if isinstance(err, (dict, str)) and err:
        return cast(dict[str, Any] | str, err)
    if "message" in doc or "detail" in doc or "title" in doc:
        # Mistral's {"object": "error", "message", "type", "code"}, FastAPI's {"detail"}, a problem+json's {"status",
        # "title"} (NVIDIA NIM's 429, https://github.com/Alishahryar1/free-claude-code/issues/690)
        return cast(dict[str, Any], doc)
    return None


def _text_of(value: object) -> str:
    """An error's message as text: a string, or validation errors (``[{"loc", "msg"}]``, alone or under
    ``detail``) as ``field: reason`` lines, the request body's name left out of each field."""
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, dict):
        return _text_of(value["detail"]) if "detail" in value else orjson.dumps(value).decode()[:500]
    if isinstance(value, list):
        lines = []
        for item in value[:20]:
            if isinstance(item, dict) and "msg" in item:
                loc = [str(p) for p in item.get("loc") or () if p != "body"]
                lines.append(f"{'.'.join(loc)}: {item['msg']}" if loc else str(item["msg"]))
            else:
                lines.append(_text_of(item))
        return "; ".join(lines)
    return str(value)


def _retry_delay(details: object, meta: object) -> float | None:
    """Seconds in Google's ``google.rpc.RetryInfo`` detail (``{"retryDelay": "26s"}``), which a Gemini 429 carries
    with or without the wait in its words (https://github.com/RooCodeInc/Roo-Code/issues/3883); else until the
    reset of a limit used up that OpenRouter passes on in ``metadata.headers`` (its free models' daily cap:
    ``X-RateLimit-Remaining: "0"``, ``X-RateLimit-Reset`` in epoch milliseconds,
    https://github.com/Gitlawb/openclaude/issues/936)."""
    for d in details if isinstance(details, list) else ():
        if isinstance(d, dict) and isinstance(delay := d.get("retryDelay"), str):
            return duration(delay)
    said = meta.get("headers") if isinstance(meta, dict) else None
    if not isinstance(said, dict) or str(said.get("X-RateLimit-Remaining")) != "0":
        return None
    try:
        reset_ms = float(str(said.get("X-RateLimit-Reset")))
    except (TypeError, ValueError):
        return None
    if not math.isfinite(reset_ms):
        return None
    return min(max(reset_ms / 1000 - time.time(), 0.0), RETRY_AFTER_CEILING)


def _reasons(details: object) -> list[str]:
    """The ``reason`` of each of Google's error details."""
    if not isinstance(details, list):
        return []
    return [str(d["reason"]) for d in details if isinstance(d, dict) and d.get("reason")]


# A 429 that says when to come back in its message, not a header: Gemini's "Please retry in 16.6s."
# (https://github.com/continuedev/continue/issues/9662), OpenAI's "Please try again in 3.89s." or "in 174ms."
# (https://github.com/continuedev/continue/issues/10502, /11472), Groq's "Please try again in 9m38.016s."
# (https://github.com/continuedev/continue/issues/10920).
_RETRY_IN = re.compile(r"\b(?:retry|try again) in ((?:\d{1,9}(?:\.\d{1,12})?(?:ms|h|m|s))+)(?![\w.]\w)", re.I)
# ... or in seconds written out: Moonshot's "please try again after 1 seconds"
# (https://github.com/LLM-Red-Team/kimi-cc/issues/16).
_RETRY_AFTER_WORDS = re.compile(r"\b(?:retry|try again) after (\d{1,6}(?:\.\d{1,9})?) ?(?:seconds?|secs?|s)\b", re.I)
# Google's answer to a key from a country its API does not serve (a 400 FAILED_PRECONDITION), quoted in
# https://github.com/FoundationAgents/OpenManus/issues/803: a region block, not the client's request.
_LOCATION_BLOCK = re.compile(r"User location is not supported", re.I)
# Z.ai's usage caps (codes 1308, 1310, 1316-1321) say when they lift, in Beijing time with no zone: "Usage limit
# reached for 5 hour. Your limit will reset at 2026-09-09 05:38:28" (https://docs.z.ai/api-reference/api-code;
# the body as quoted in https://github.com/hugalafutro/model-hotel/pull/955), or "将在 … 重置".
_RESET_AT = re.compile(r"(?:will reset at|将在)\s*(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})")
_BEIJING = datetime.timezone(datetime.timedelta(hours=8))


def _until_beijing(stamp: str) -> float | None:
    """Seconds from now to ``stamp`` read in Beijing time; None when it is not a date."""
    try:
        at = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=_BEIJING)
    except ValueError:
        return None
    return max((at - datetime.datetime.now(datetime.UTC)).total_seconds(), 0.0)


_GUARDRAIL = re.compile(r"\bguardrail|prompt injection|\bmoderation\b|\bflagged\b", re.I)
# Fireworks suspends an account past its spending limit or with invoices unpaid (a 412, quoted in
# https://github.com/FerroxLabs/wayland/issues/545): every request of that account fails until it is paid.
_SUSPENDED = re.compile(r"\baccount\b.{0,80}\bis suspended\b", re.I)
# xAI says an empty team in words alone, with a 429 or a 403 ("Your team ... has either used all available credits
# or reached its monthly spending limit", https://github.com/continuedev/continue/issues/10373; "Your newly created
# team doesn't have any credits or licenses yet", https://github.com/continuedev/continue/issues/12670; "You have run
# out of credits", https://github.com/Wei-Shaw/sub2api/issues/4069): the account's, not a rate limit or a bad key.
_NO_CREDITS = re.compile(r"used all available credits|run out of credits|(?:doesn't|does not) have any credits",
                         re.I)
# OpenRouter's 402 for a request dearer than what is left: "You requested up to 65536 tokens, but can only afford
# 10114" (https://github.com/babikov/doka-site/issues/7).
_AFFORDS = re.compile(r"\bcan only afford (\d{1,12})\b")
# Gemini's 429 for a model the key's tier has no quota of: "Quota exceeded for metric: ..., limit: 0, model: ..."
# (https://github.com/akshayaggarwal99/nodenest/issues/1, https://github.com/google-gemini/gemini-cli/issues/22486),
# "Gemini 2.5 Pro Preview doesn't have a free quota tier" (https://github.com/danny-avila/LibreChat/issues/7283).
_NO_QUOTA_ON_TIER = re.compile(r"\blimit: 0\b|doesn't have a free quota tier", re.I)
# A 404 that names the model as missing, with no code to say so: vLLM's "The model `x` does not exist."
# (https://github.com/vllm-project/vllm/issues/3485), Ollama's /v1 'model "x" not found, try pulling it first'
# (https://github.com/netease-youdao/QAnything/issues/555). A 404 without such words is a path not served.
_NO_SUCH_MODEL = re.compile(r"\bmodel\b.{0,200}?\b(?:not found|does not exist)\b", re.I | re.S)
# Google's 400 INVALID_ARGUMENT for a model the account may not use, or a name it does not know, with no code of its
# own (https://github.com/google-gemini/gemini-cli/issues/14603).
_NO_MODEL_ACCESS = re.compile(r"You don't have access to this model or the model name is invalid", re.I)


def refusal_of(code: str | None, param: object, message: str) -> Refusal | None:
    """Whether an error says this model refuses a parameter of the request: which, and how."""
    for words, named, always in _REFUSED_WORDS:
        if (found := words.search(message)) is None:
            continue
        name = named or found.group(1)
        if named is None and name not in DROPPABLE:
            break  # words about a parameter no model may go without: the client's to change
        return Refusal(name, always)
    if code in REFUSAL_CODES_OF_PARAMS:  # OpenAI's codes, its words not known to us: this value, this model
        return Refusal(param if isinstance(param, str) and param else None, code == "unsupported_parameter")
    return None


# Structured codes providers document for these cases (the fixtures in tests/fixtures/*/errors name the sources).
# The code a client gets when a provider's moderation refused the content, whatever the provider called it.
REFUSED = "content_policy_violation"
# What providers call it: Z.ai's business code 1301 (https://docs.z.ai/api-reference/api-code), DashScope's
# data inspection (https://www.alibabacloud.com/help/en/model-studio/error-code), Moonshot's error type
# (https://platform.kimi.ai/docs/api/errors), Azure OpenAI's filter code.
REFUSAL_CODES = frozenset({REFUSED, "1301", "data_inspection_failed", "DataInspectionFailed", "content_filter"})
# Codes of an error sent inside a stream already answered 200 that, sent before it, come with a 429:
# OpenAI's, Moonshot's (https://platform.kimi.ai/docs/api/errors) and Z.ai's concurrency and
# frequency codes (https://docs.z.ai/api-reference/api-code).
IN_BAND_RATE_CODES = frozenset({
    "rate_limit_exceeded", "rate_limit_reached_error", "engine_overloaded_error", "1302", "1303", "1305",
})
BLOCK_CODES = frozenset({
    "unsupported_country_region_territory", "region_not_supported", "unsupported_region",
    # Z.ai / Zhipu: the account locked, or locked for a violation, until its support unlocks it
    # (https://docs.z.ai/api-reference/api-code; docs.bigmodel.cn/cn/api/api-code): every model of the account.
    "1112", "1121",
})
CONTEXT_CODES = frozenset({
    "context_length_exceeded", "string_above_max_length", "context_window_exceeded",
    # llama-server's type for a prompt past the slot's context (https://github.com/ggml-org/llama.cpp/pull/15780)
    "exceed_context_size_error",
})
# Codes for output the model wrote that the provider could not parse: Groq's tool_use_failed, with what the model
# wrote in ``failed_generation`` (https://github.com/groq/groq-typescript/issues/103,
# https://github.com/vercel/ai/issues/6916).
BAD_OUTPUT_CODES = frozenset({"tool_use_failed"})
# OpenAI's and Anthropic's codes; Google's status and detail reason for a key it refuses
# (https://github.com/continuedev/continue/issues/10290).
AUTH_CODES = frozenset({"invalid_api_key", "authentication_error", "incorrect_api_key", "API_KEY_INVALID",
                        "UNAUTHENTICATED"})
# The code (or type) each provider sends when the account cannot pay, and the plain words for it.
BILLING_WORDS = {
    "insufficient_quota": "quota exhausted (plan and billing)",  # OpenAI, 429
    "credit_balance_exhausted": "prepaid credit exhausted",  # OpenAI, 429
    "organization_spend_limit_exceeded": "organisation spend limit reached",  # OpenAI, 429
    "project_spend_limit_exceeded": "project spend limit reached",  # OpenAI, 429
    "organization_usage_limit_exceeded": "organisation usage limit reached",  # OpenAI, 429
    "exceeded_current_quota_error": "quota exceeded (plan and billing)",  # Moonshot / Kimi, 429
    "Arrearage": "account in arrears",  # DashScope (Alibaba Model Studio)
    "1113": "balance exhausted or no resource package",  # Z.ai / Zhipu, 429
    "billing_error": "billing problem on the account",  # Anthropic, 402
    "credit_balance_too_low": "credit balance too low",  # Anthropic's 400, as its reader names it
    "spend_limit_reached": "organisation or workspace spend limit reached",  # Anthropic's 400, as its reader names it
    "enforced_spend_limit_reached": "the usage tier's monthly spend cap reached",  # Anthropic, 429
    "1309": "Coding Plan package expired",  # Z.ai / Zhipu
    "AllocationQuota.FreeTierOnly": "free tier used up, with 'use free tier only' on",  # DashScope, 403
}
BILLING_CODES = frozenset(BILLING_WORDS)
MODEL_MISSING_CODES = frozenset({
    "model_not_found",  # OpenAI and most compatibles, 404
    "invalid_model",  # Mistral's type, 400 "Invalid model: ..." (https://github.com/mistralai/mistral-vibe/issues/617)
    # Together, 400: a model it does not serve without a dedicated endpoint, or one whose endpoint is down
    # (https://github.com/HeyPuter/puter/issues/3168)
    "model_not_available", "dedicated_endpoint_not_running",
    "resource_not_found_error",  # Moonshot / Kimi, 404 on an unknown model
    "1211",  # Z.ai / Zhipu, 400 "Unknown Model" (https://docs.z.ai/api-reference/api-code)
    "unknown_model",  # Mistral's code, {"param": "model", "code": "unknown_model"} (docs.mistral.ai error glossary)
    # DashScope, 403: a model the account has not bought ("Access to model denied. Please make sure you are eligible
    # for using the model.", https://github.com/earendil-works/pi/issues/7588): the key serves its other models.
    "AccessDenied.Unpurchased",
})


def wait_said(info: ErrorInfo, headers: Mapping[str, str]) -> float | None:
    """When a 429 without ``Retry-After`` says to come back: in a field of its body (Google's RetryInfo), in its
    words ("Please try again in 3.89s", "... reset at <Beijing time>"), or in the reset header of a limit it
    has used up (``x-ratelimit-remaining-tokens: 0`` with ``x-ratelimit-reset-tokens: 6m0s``)."""
    if info.retry_after is not None:
        return info.retry_after
    if (said := _RETRY_IN.search(info.message)) is not None and (seconds := duration(said.group(1))) is not None:
        return seconds
    if (said := _RETRY_AFTER_WORDS.search(info.message)) is not None:
        return float(said.group(1))
    if (reset := _RESET_AT.search(info.message)) is not None:
        return _until_beijing(reset.group(1))
    # OpenAI's and Groq's headers (https://platform.openai.com/docs/guides/rate-limits#rate-limits-in-headers): the
    # limits used up are waited out, the longest of them.
    waits = [duration(headers.get(f"x-ratelimit-reset-{k}") or "") for k in ("requests", "tokens")
             if headers.get(f"x-ratelimit-remaining-{k}") == "0"]
    return max((w for w in waits if w is not None), default=None)
