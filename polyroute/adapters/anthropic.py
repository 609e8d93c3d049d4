"""Anthropic Messages API: ``POST {base_url}/v1/messages``, translated both ways.

Requests: system and developer turns become the top-level ``system``; tool turns
become ``tool_result`` blocks in a user turn; assistant tool calls become
``tool_use`` blocks; image parts become image blocks; an assistant turn's signed
thinking (``reasoning_details``) goes back as its thinking blocks
(``polyroute.adapters.claude_thinking``). Answers and the named-event
SSE stream become OpenAI-shaped dicts. Rescue continuation is Anthropic's own
"prefill": a trailing assistant turn is continued, not answered.
"""

from __future__ import annotations

import base64
import logging
import re
from typing import Any, cast

import orjson

from polyroute.adapters.base import OPTIONAL_PARAMS, Call, make_chunk, now, usage_chunk
from polyroute.adapters.claude_betas import BETA_HEADER, betas_of, joined, refused_betas
from polyroute.adapters.claude_cache import marked, marked_last, system_blocks
from polyroute.adapters.claude_effort import (
    BETWEEN_TOOLS,
    CANNOT_TURN_OFF,
    NO_BUDGET,
    refused_with_thinking,
    thinking_for,
)
from polyroute.adapters.claude_schema import STRUCTURED, output_format
from polyroute.adapters.claude_thinking import History, ThinkingStream, detail_of, in_order
from polyroute.adapters.claude_turns import (
    BINDING_BETA,
    BINDING_REFUSED,
    PREFIX_CHECKED,
    SYSTEM_IN_PLACE,
    SYSTEM_REFUSED,
    placeable,
    refusal_text,
    system_turn,
    with_binding,
)
from polyroute.adapters.error_body import ErrorInfo, Refusal, json_error_reader, refusal_of
from polyroute.adapters.http import HttpAdapter, error_from_status, tool_arguments
from polyroute.adapters.shape import Shape
from polyroute.adapters.sse_chunks import SSEChunks
from polyroute.adapters.tool_ids import for_claude
from polyroute.assemble import as_chunks
from polyroute.cache_marks import MARK, blocks_without_marks
from polyroute.config import HttpBackendConfig
from polyroute.errors import UpstreamBadResponse, UpstreamParamRefused, UpstreamRejected
from polyroute.refusals import BLOCK_BINDING, CLIENT_BETAS, SYSTEM_PLACEMENT, BetaRefusals
from polyroute.types import ChatChunk, ChatResponse, Delta, Message, ResponseMessage, Usage, make_usage, token_count

log = logging.getLogger("polyroute.failover")

API_VERSION = "2023-06-01"
# Anthropic requires max_tokens; OpenAI clients usually leave it out.
DEFAULT_MAX_TOKENS = 4096

FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# The status each error type is documented with, for errors that arrive inside a 200 stream.
STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}

TOOL_CHOICE = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}

# Claude models from Sonnet 4.5 and Opus 4.1 on refuse a request that sets both temperature and
# top_p with 400 "`temperature` and `top_p` cannot both be specified for this model. Please use only
# one." (the migration guide, https://platform.claude.com/docs/en/about-claude/models/migrating-to-claude-4,
# read 2026-12-06: "use only temperature OR top_p, not both"). The models before them accept both.
_BOTH_SAMPLERS = re.compile(r"claude-(3|(sonnet|opus)-4-(0|2025))")
# From Claude Opus 4.7 and Sonnet 4.6 on, the sampling parameters are gone: any value but the default is a
# 400 "`temperature` is deprecated for this model" (Sonnet 4.6 takes 1.0 alone). The migration guide
# (https://platform.claude.com/docs/en/about-claude/models/migration-guide): "Setting temperature, top_p, or
# top_k to any non-default value on Claude Opus 4.7 or later models ... returns a 400 error." Those matched
# here are sent none; an id not matched that refuses them anyway is learned from its refusal (polyroute.refusals).
_NO_SAMPLERS = re.compile(r"claude-(?:opus-4-(?:[7-9]|1\d)|sonnet-4-(?:[6-9]|1\d)|[a-z]+-(?:[5-9]|[1-9]\d))(?!\d)")
_SAMPLERS = frozenset({"temperature", "top_p", "top_k"})
# From Claude Opus 4.6 and Sonnet 4.6 on, a conversation may not end with the assistant's turn: "Prefilling
# assistant messages returns a 400 error on Claude 4.6 models" (https://platform.claude.com/docs/en/about-claude/
# models/whats-new-claude-4-6, #prefill-removal; every 5.x model too, per its migration guide). Those models
# cannot continue a cut answer: a rescue goes to a candidate that can.
_NO_PREFILL = re.compile(r"claude-(?:(?:opus|sonnet)-4-(?:[6-9]|1\d)|[a-z]+-(?:[5-9]|[1-9]\d))(?!\d)")
# Claude Opus 5.5, Sonnet 5.5, Fable 5.1 and Mythos 5.1 refuse forced tool use ("Forced tool use returns an
# error", https://platform.claude.com/docs/en/models/opus-5-5/whats-new-opus-5-5#forced-tool-use-is-not-supported,
# the same on .../sonnet-5-5/whats-new-sonnet-5-5 and .../fable-5-1/whats-new-fable-5-1). A request that forces a
# call is asked of another candidate.
_NO_FORCED_TOOL = re.compile(r"claude-(?:(?:opus|sonnet)-5-[5-9]|(?:fable|mythos)-5-[1-9])(?!\d)")
# Which models take no budget, cannot turn thinking off, or turn it off as between_tools
# (polyroute.adapters.claude_effort).
_NO_BUDGET, _ADAPTIVE_ONLY, _BETWEEN_TOOLS = NO_BUDGET, CANNOT_TURN_OFF, BETWEEN_TOOLS
_PROMPT_TOO_LONG = re.compile(r"prompt is too long", re.I)
_CREDIT_TOO_LOW = re.compile(r"credit balance is too low", re.I)
# A spend limit the organisation or a workspace set, reached: a 400 invalid_request_error whose words say
# so (https://platform.claude.com/docs/en/api/errors, read 2026-12-07).
_SPEND_LIMIT = re.compile(r"reached your specified (workspace )?API usage limits", re.I)
# What the gateway sends on its own that an endpoint serving Claude may refuse, and the words it refuses it with:
# the request goes to the same model again without it (polyroute.refusals).
_OWN_REFUSED = ((SYSTEM_PLACEMENT, SYSTEM_REFUSED), (BLOCK_BINDING, BINDING_REFUSED))
# Claude on structured outputs it cannot give: a model or endpoint without them, or a schema past what its
# constrained decoding compiles (recursive, too large). Another candidate may take the same request, so it is passed
# on, and, when the model refuses the feature itself, passed over for an hour.
_FORMAT_UNSUPPORTED = re.compile(r"(?:output_config\.format|output_format|structured outputs?)\b[^\n]{0,120}?"
                                 r"(?:not (?:supported|available|permitted)|Extra inputs)", re.I)
_FORMAT_SCHEMA = re.compile(r"output_config\.format\.schema\b|\bschema\b[^\n]{0,80}?\b(?:too complex|recursive|"
                            r"not supported)", re.I)
_REGION_WORDS = re.compile(r"\b(country|countries|region|territor)", re.I)
# What a document block takes (https://docs.anthropic.com/en/docs/build-with-claude/pdf-support; plain text
# documents in https://docs.anthropic.com/en/docs/build-with-claude/citations).
_DOCUMENT_TYPES = frozenset({"application/pdf", "text/plain"})
_DATA_URL = re.compile(r"data:(?P<media>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.S)


def read_error(status: int, body: bytes) -> ErrorInfo:
    """Read ``{"type": "error", "error": {"type", "message"}}``."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return json_error_reader(status, body)
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return json_error_reader(status, body)
    etype = str(err.get("type") or "")
    message = str(err.get("message") or etype or f"HTTP {status}")
    # A request from an unsupported country is refused before the API proper, as type
    # "forbidden" ("Request not allowed"), not the documented "permission_error" of a key.
    blocked = status in (403, 451) and (etype == "forbidden" or bool(_REGION_WORDS.search(message)))
    context = etype == "invalid_request_error" and bool(_PROMPT_TOO_LONG.search(message))
    # An exhausted credit balance comes as a plain 400 invalid_request_error: Anthropic gives it
    # no code of its own, so its words are read (billing_error, when sent, is the code).
    low_credit = etype == "invalid_request_error" and bool(_CREDIT_TOO_LOW.search(message))
    spend_limit = etype == "invalid_request_error" and bool(_SPEND_LIMIT.search(message))
    # The usage tier's monthly cap comes as a 429 rate_limit_error with no retry-after; only
    # ``details.error_code`` tells it apart (https://platform.claude.com/docs/en/api/rate-limits).
    details = err.get("details")
    capped = isinstance(details, dict) and details.get("error_code") == "enforced_spend_limit_reached"
    # A prompt past the window is OpenAI's context_length_exceeded to the client, as from every other provider
    # (SDKs and frameworks tell it by that code), not Claude's invalid_request_error.
    code = ("credit_balance_too_low" if low_credit else "spend_limit_reached" if spend_limit
            else "enforced_spend_limit_reached" if capped else "context_length_exceeded" if context
            else etype or None)
    refusal = refusal_of(None, None, message)
    if refusal is None and status in (400, 422):  # what the gateway itself chose to send, refused by the endpoint
        own = next((p for p, words in _OWN_REFUSED if words.search(message)), None)
        refusal = Refusal(own, True) if own else None
        if refusal is None and refused_betas(message):  # a beta the client asked for (polyroute.adapters.claude_betas)
            refusal = Refusal(CLIENT_BETAS, False)  # the names are kept by the adapter, per model
        if refusal is None and (_FORMAT_UNSUPPORTED.search(message) or _FORMAT_SCHEMA.search(message)):
            refusal = Refusal("response_format", _FORMAT_UNSUPPORTED.search(message) is not None)
    return ErrorInfo(
        message,
        code=code,
        model_refuses=refusal is not None,
        refused_param=refusal.param if refusal else None,
        refused_always=bool(refusal and refusal.always),
        blocked=blocked,
        context_exceeded=context,
        auth=etype == "authentication_error",
        billing=low_credit or spend_limit or capped or etype == "billing_error",
        # On /v1/messages the one resource that can be missing is the model.
        model_missing=status == 404 and etype == "not_found_error",
    )


class AnthropicAdapter(HttpAdapter):
    kind = "anthropic"
    supports = OPTIONAL_PARAMS - {"seed"}
    extras = frozenset({"top_k", "thinking", "metadata", "parallel_tool_calls", "reasoning_effort"})
    default_continuation = "prefill"
    path = "/v1/messages"
    key_header = "x-api-key"
    key_prefix = ""
    base_headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
    read_error = staticmethod(read_error)

    def __init__(self, name: str, config: HttpBackendConfig) -> None:
        super().__init__(name, config)
        # The betas of the backend's ``headers``, whatever the case of the name: the operator's, always sent.
        configured = [k for k in self.headers if k.lower() == BETA_HEADER]
        self.configured_betas = tuple(b.strip() for k in configured for b in self.headers.pop(k).split(","))
        if self.configured_betas:
            self.headers[BETA_HEADER] = joined(self.configured_betas)
        # The client's betas each model refused lately (polyroute.adapters.claude_betas).
        self.refused_betas = BetaRefusals()

    def continues(self, model: str) -> bool:
        return self.can_continue and not _NO_PREFILL.search(model)

    def unsupported(self, wanted: set[str], model: str) -> frozenset[str]:
        missing = super().unsupported(wanted, model)
        if "response_format" in wanted and not STRUCTURED.search(model):
            missing |= {"response_format"}  # structured outputs came with the 4.5 models
        if _NO_SAMPLERS.search(model):
            return missing | (wanted & _SAMPLERS)
        if {"temperature", "top_p"} <= wanted - missing and not _BOTH_SAMPLERS.search(model):
            return missing | {"top_p"}  # temperature wins
        return missing

    # -- request ---------------------------------------------------------------------------

    def payload(self, call: Call, stream: bool) -> dict[str, Any]:
        req, drop, extras = call.request, call.drop, call.request.extras()
        system, turns, returned = self._turns(call)
        body: dict[str, Any] = {
            "model": call.upstream_model,
            "max_tokens": req.output_limit() or DEFAULT_MAX_TOKENS,
            "messages": turns,
        }
        if system:
            body["system"] = system
        if stream:
            body["stream"] = True
        if req.temperature is not None and "temperature" not in drop:
            # Anthropic's scale ends at 1.0 where OpenAI's ends at 2.0.
            body["temperature"] = min(req.temperature, 1.0)
        if req.top_p is not None and "top_p" not in drop:
            body["top_p"] = req.top_p
        if req.stop_list() and "stop" not in drop:
            body["stop_sequences"] = req.stop_list()
        if req.tools and "tools" not in drop:
            asked = req.tool_choice if "tool_choice" not in drop else None
            tools, asked = _allowed(req.tools, asked)
            if asked not in (None, "auto", "none") and _NO_FORCED_TOOL.search(call.upstream_model):
                raise UpstreamParamRefused(f"{call.upstream_model} refuses a forced tool call (tool_choice "
                                           f"{orjson.dumps(asked).decode()})", param="tool_choice",
                                           backend=self.name, model=call.upstream_model)
            body["tools"] = [marked(_tool(t["function"]), t) for t in tools]
            choice = _tool_choice(asked, extras)
            if choice:
                body["tool_choice"] = choice
        if req.response_format and "response_format" not in drop:
            self._format(body, req.response_format, call.upstream_model)
        # Anthropic-only knobs a client may send as extra fields.
        body.update({k: v for k, v in extras.items() if k in ("top_k", "thinking") and k not in drop})
        if "thinking" in body:  # the client's own wins over its reasoning_effort
            body["thinking"] = self._thinking(body["thinking"], call.upstream_model)
        elif extras.get("reasoning_effort") is not None and "reasoning_effort" not in drop:
            self._effort(body, extras["reasoning_effort"], call.upstream_model)
        if returned and BLOCK_BINDING not in call.drop and PREFIX_CHECKED.search(call.upstream_model):
            body["thinking"] = with_binding(body.get("thinking"))
        if refused := refused_with_thinking(body, call.upstream_model, backend=self.name):
            raise refused  # a sampler Claude refuses while it thinks: this model again without it
        # Anthropic's metadata holds user_id alone (another key is a 400). OpenAI's ``user`` is not sent
        # there: applications often put an email in it, which Anthropic refuses in user_id.
        meta = extras.get("metadata")
        if isinstance(meta, dict) and isinstance(user := meta.get("user_id"), str) and user:
            body["metadata"] = {"user_id": user}
        # An Anthropic-wire endpoint that refused a breakpoint (Claude on a cloud, a relay) is sent none.
        return blocks_without_marks(body) if MARK in drop else body

    def _turns(self, call: Call) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]], bool]:
        """The top-level system, the turns, and whether any thinking block goes back to Claude."""
        system: list[str] = []
        instructions: list[tuple[Any, dict[str, Any] | None]] = []
        turns: list[dict[str, Any]] = []
        thinking = History()
        messages = call.request.messages
        in_place = SYSTEM_PLACEMENT not in call.drop and SYSTEM_IN_PLACE.search(call.upstream_model) is not None
        for i, m in enumerate(messages):
            if m.role in ("system", "developer"):
                if in_place and placeable(turns, messages, i):
                    if m.text():
                        turns.append({"role": "system", "content": system_turn(m)})
                    continue
                system.append(m.text())
                instructions.append((m.content, m.model_extra))
                continue
            role, blocks = self._blocks(m, i, call.upstream_model, thinking)
            if not blocks:
                continue
            if turns and turns[-1]["role"] == role:
                # Tool results answering one assistant turn must share one user turn.
                turns[-1]["content"].extend(blocks)
            else:
                turns.append({"role": role, "content": blocks})
        prefill = (call.prefix or "").rstrip()
        if prefill:
            # Anthropic refuses a final assistant turn that ends in whitespace; the
            # stripped tail is put back when the continuation arrives (see _Rejoin).
            turns.append({"role": "assistant", "content": prefill})
        marked_system = system_blocks(instructions)  # as blocks only when one marks a cache breakpoint
        joined = "\n\n".join(s for s in system if s)
        return (marked_system if marked_system is not None else joined), turns, thinking.kept

    def _blocks(self, m: Message, i: int, model: str, thinking: History) -> tuple[str, list[dict[str, Any]]]:
        if m.role in ("tool", "function"):
            result = {"type": "tool_result", "tool_use_id": for_claude(m.tool_call_id or m.name or ""),
                      "content": m.text()}
            return "user", marked_last([result], m.model_extra)
        blocks = self._content(m.content, model)
        if m.role == "assistant":
            if blocks or m.tool_calls:  # the turn's thinking where Claude wrote it: first, or inside the text
                blocks = in_order(thinking.blocks(m.model_extra), m.content, blocks)
            else:  # thinking alone (an answer cut while thinking): no turn to send
                thinking.skip(m.model_extra)
            for j, tc in enumerate(m.tool_calls or []):
                blocks.append(self._tool_use(tc, f"messages[{i}].tool_calls[{j}]", model))
        return ("assistant" if m.role == "assistant" else "user"), marked_last(blocks, m.model_extra)

    def _content(self, content: str | list[dict[str, Any]] | None, model: str) -> list[dict[str, Any]]:
        if not content:
            return []
        if isinstance(content, str):
            return [{"type": "text", "text": content}]
        blocks: list[dict[str, Any]] = []
        for part in content:
            kind = part.get("type")
            if kind == "text" and part.get("text"):
                blocks.append(marked({"type": "text", "text": part["text"]}, part))
            elif kind == "image_url":
                url = part.get("image_url")
                image = self._image(url.get("url", "") if isinstance(url, dict) else str(url or ""), model)
                blocks.append(marked(image, part))
            elif kind in ("image", "document"):
                blocks.append(part)  # already in Anthropic's shape
            elif kind == "file":
                blocks.append(marked(self._document(part.get("file"), model), part))
            elif kind != "text":  # audio and anything else Claude has no block for: asked of another model
                raise UpstreamParamRefused(f"Claude takes no {kind!r} content part", param="messages",
                                           backend=self.name, model=model)
        return blocks

    def _thinking(self, thinking: object, model: str) -> object:
        """A client's ``thinking`` as the newest Claude models take it: they size their own thinking (a budget is a
        400, so ``enabled`` becomes ``adaptive``); Sonnet 5.5 turns it off as ``between_tools``; Opus 5.5, Fable
        and Mythos 5.1 cannot turn it off, so such a request is asked of another candidate. Other fields
        (``block_binding``, ``display``) are kept."""
        if not isinstance(thinking, dict) or not _NO_BUDGET.search(model):
            return thinking
        kind = thinking.get("type")
        rest = {k: v for k, v in thinking.items() if k not in ("type", "budget_tokens")}
        if kind == "enabled":
            return {"type": "adaptive", **rest}
        if kind == "disabled" and _ADAPTIVE_ONLY.search(model):
            if _BETWEEN_TOOLS.search(model):
                return {"type": "between_tools", **rest}
            raise UpstreamParamRefused(f"{model} cannot turn thinking off (thinking {{\"type\": \"disabled\"}})",
                                       param="thinking", backend=self.name, model=model)
        return thinking

    def _effort(self, body: dict[str, Any], asked: object, model: str) -> None:
        """OpenAI's ``reasoning_effort`` as this model thinks (polyroute.adapters.claude_effort). Thinking cannot go
        with a forced tool call ("Tool use with thinking only supports tool_choice auto or none", the extended
        thinking page): the call the client forced is what it reads, so this model makes it without thinking."""
        forced = body.get("tool_choice", {}).get("type") in ("any", "tool")
        if forced and asked != "none":
            raise UpstreamParamRefused(f"{model} cannot think and make a forced tool call", param="reasoning_effort",
                                       backend=self.name, model=model)
        plan = thinking_for(asked, model, body["max_tokens"], backend=self.name)
        body["max_tokens"] = plan.max_tokens
        if plan.thinking is not None:
            body["thinking"] = plan.thinking
        if plan.effort is not None:
            body["output_config"] = {**body.get("output_config", {}), "effort": plan.effort}

    def _format(self, body: dict[str, Any], asked: dict[str, Any], model: str) -> None:
        """OpenAI's ``response_format`` as Claude's structured outputs (polyroute.adapters.claude_schema); JSON mode
        without a schema has none, so that request goes to another candidate."""
        if asked.get("type") == "json_object":
            raise UpstreamParamRefused(f"{model} has no JSON mode without a schema (response_format json_object); "
                                       "send a json_schema", param="response_format", backend=self.name, model=model)
        if (fmt := output_format(asked)) is not None:
            body["output_config"] = {**body.get("output_config", {}), "format": fmt}

    def _headers(self, body: dict[str, Any], call: Call) -> dict[str, str]:
        """The headers for this request: the backend's betas, then the client's (less those this model refused
        lately), then the one its ``thinking.block_binding`` needs."""
        thinking = body.get("thinking")
        binding = isinstance(thinking, dict) and "block_binding" in thinking
        client = betas_of(call.request)
        if not binding and not client:
            return self.headers
        if client and (refused := self.refused_betas.of(call.upstream_model)):
            client = tuple(b for b in client if b not in refused)
        betas = joined(self.configured_betas, client, (BINDING_BETA,) if binding else ())
        return {**self.headers, BETA_HEADER: betas} if betas else self.headers

    def note_refused_betas(self, exc: UpstreamParamRefused, model: str) -> None:
        """What an endpoint's refusal of betas names, kept for ``model``: its later requests go without them (those
        the gateway sends itself are not the client's: the binding's is left out by its own refusal)."""
        if refused := refused_betas(exc.message) - {BINDING_BETA, *self.configured_betas}:
            self.refused_betas.note(model, refused)
            log.info("%s/%s refuses the beta(s) %s: sent without them from now on", self.name, model,
                     ", ".join(sorted(refused)))

    def _document(self, file: object, model: str) -> dict[str, Any]:
        """OpenAI's file part (``file_data`` as a data: URL) as a document block: PDF or plain text."""
        data = file.get("file_data") if isinstance(file, dict) else None
        m = _DATA_URL.fullmatch(data) if isinstance(data, str) else None
        if m is None or m["media"] not in _DOCUMENT_TYPES:
            why = ("a file id (file_id) Claude cannot read" if isinstance(file, dict) and file.get("file_id")
                   else "a file that is not a PDF or plain text sent as file_data")
            raise UpstreamParamRefused(f"Claude takes no {why}", param="messages", backend=self.name, model=model)
        if m["media"] == "application/pdf":
            source = {"type": "base64", "media_type": "application/pdf", "data": m["data"]}
            return {"type": "document", "source": source}
        try:
            text = base64.b64decode(m["data"], validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise UpstreamRejected("a text/plain file_data that is not base64 UTF-8", backend=self.name,
                                   model=model) from None
        return {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}

    def _image(self, url: str, model: str) -> dict[str, Any]:
        if not url.startswith("data:"):
            return {"type": "image", "source": {"type": "url", "url": url}}
        m = _DATA_URL.fullmatch(url)
        if m is None:
            raise UpstreamRejected("image_url is a data: URL that is not base64", backend=self.name, model=model)
        return {"type": "image", "source": {"type": "base64", "media_type": m["media"], "data": m["data"]}}

    def _tool_use(self, tc: dict[str, Any], where: str, model: str) -> dict[str, Any]:
        args = tool_arguments(tc, where, backend=self.name, model=model)
        fn = tc.get("function") or {}
        return {"type": "tool_use", "id": for_claude(str(tc.get("id") or "")), "name": fn.get("name", ""),
                "input": args}

    # -- whole answers -----------------------------------------------------------------------

    async def complete(self, call: Call) -> ChatResponse:
        model = call.upstream_model
        body = self.payload(call, False)
        try:
            doc = await self.http.post_json(self.url, body, self._headers(body, call), model, call.timeout)
        except UpstreamParamRefused as exc:
            self.note_refused_betas(exc, model)
            raise
        return self.whole_answer(doc, call)

    def whole_answer(self, doc: object, call: Call) -> ChatResponse:
        """A Messages API answer as a ``chat.completion``; a body of another shape is a bad response."""
        model = call.upstream_model
        if not isinstance(doc, dict) or not isinstance(doc.get("content"), list):
            raise UpstreamBadResponse("answer has no content list", backend=self.name, model=model)
        try:
            return self._answer(doc, call)
        except (KeyError, TypeError, AttributeError) as exc:
            raise UpstreamBadResponse(f"unexpected answer shape ({exc!r})", backend=self.name, model=model) from None

    def _answer(self, doc: dict[str, Any], call: Call) -> ChatResponse:
        text, thinking, tool_calls = "", "", []
        details: list[dict[str, Any]] = []
        for block in doc["content"]:
            if block["type"] == "text":
                text += block["text"]
            elif (detail := detail_of(block, len(details), len(text))) is not None:
                details.append(detail)
                thinking += block.get("thinking") or ""
            elif block["type"] == "tool_use":
                args = orjson.dumps(block.get("input") or {}).decode()
                fn = {"name": block["name"], "arguments": args}
                tool_calls.append({"id": block["id"], "type": "function", "function": fn})
        if call.prefix:
            text = call.prefix + _Rejoin(call.prefix).feed(text)
        message: ResponseMessage = {"role": "assistant", "content": text or (None if tool_calls else "")}
        if tool_calls:
            message["tool_calls"] = tool_calls
        if thinking:
            message["reasoning_content"] = thinking
        if details:
            message["reasoning_details"] = details
        finish = FINISH.get(str(doc.get("stop_reason")), "stop")
        usage = _usage(doc.get("usage") or {})
        if doc.get("stop_reason") == "refusal":
            message["refusal"] = refusal_text(doc.get("stop_details"))
            if not (text or tool_calls or details):
                usage = make_usage(0, 0)  # declined before any output: not billed (see refusal_text)
        answer: ChatResponse = {
            "id": str(doc.get("id") or ""),
            "object": "chat.completion",
            "created": now(),
            "model": str(doc.get("model") or call.upstream_model),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        }
        if (matched := _matched(doc)) is not None:
            cast(dict[str, Any], answer["choices"][0])["stop_reason"] = matched
        if changed := doc.get("input_transformations"):  # thinking blocks the API dropped or let through
            answer["input_transformations"] = changed
        return answer

    # -- streams -------------------------------------------------------------------------------

    def stream(self, call: Call) -> SSEChunks:
        model = call.upstream_model
        body = self.payload(call, True)
        return _Chunks(self, _Events(self, call), self.url, body, self._headers(body, call), model, call.timeout)

    def stream_error(self, data: str, model: str) -> Exception:
        """An error sent as an SSE event after a 200: classified as its type's status would be."""
        try:
            etype = str(orjson.loads(data)["error"]["type"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            etype = "api_error"
        status, body = STATUS_OF_TYPE.get(etype, 500), data.encode()
        return error_from_status(status, body, {}, self.http.reader, backend=self.name, model=model)


class _Chunks(SSEChunks):
    """Claude's stream: a refusal of betas comes with its opening, and is noted by the adapter."""

    __slots__ = ("adapter",)

    def __init__(self, adapter: AnthropicAdapter, reader: _Events, url: str, payload: object,
                 headers: dict[str, str], model: str, timeout: float | None) -> None:
        super().__init__(adapter.http, reader, url, payload, headers, model, timeout)
        self.adapter = adapter

    async def _read(self) -> None:
        try:
            await super()._read()
        except UpstreamParamRefused as exc:
            self.adapter.note_refused_betas(exc, self.model)
            raise


class _Events:
    """Anthropic's stream: typed events, an ``error`` event for a failure after the 200, ``message_stop`` at the end."""

    __slots__ = ("adapter", "call", "model", "shape", "state")

    def __init__(self, adapter: AnthropicAdapter, call: Call) -> None:
        self.adapter = adapter
        self.call = call
        self.model = call.upstream_model
        self.state = _StreamState(call)
        self.shape = Shape(adapter.name, call.upstream_model)

    @property
    def ended(self) -> bool:
        return self.state.stopped

    def on(self, event: str, data: str) -> list[ChatChunk]:
        if event == "error":
            raise self.adapter.stream_error(data, self.model)
        try:
            chunks = self.state.on(event, orjson.loads(data))
        except (ValueError, KeyError, TypeError, AttributeError):  # ValueError: bad JSON, or a field of a wrong shape
            raise UpstreamBadResponse(f"malformed {event} event", backend=self.adapter.name, model=self.model) from None
        for chunk in chunks:  # made of the event's fields: of the types the gateway reads, or a bad answer
            for choice in chunk["choices"]:
                self.shape.choice(cast(dict[str, Any], choice), "delta")
        return chunks

    def missing_end(self) -> str:
        return "stream ended without message_stop"

    def whole(self, doc: object) -> list[ChatChunk]:
        self.state.stopped = True
        return as_chunks(self.adapter.whole_answer(doc, self.call))


class _StreamState:
    """Turns Anthropic's content-block events into OpenAI chunk deltas."""

    def __init__(self, call: Call) -> None:
        self.id = ""
        self.model = call.upstream_model
        self.created = now()
        self.usage: dict[str, Any] = {}
        self.tools: dict[int, int] = {}  # content block index -> tool call index
        self.thinking = ThinkingStream()
        self.said = 0  # characters of text sent so far: where a thinking block after some text sits
        self.refused = False  # stopped by a classifier refusal
        self.rejoin = _Rejoin(call.prefix or "")
        self.stopped = False

    def chunk(self, delta: Delta, finish: str | None = None) -> ChatChunk:
        return make_chunk(self.id, self.model, delta, finish, created=self.created)

    def on(self, event: str, doc: dict[str, Any]) -> list[ChatChunk]:
        kind = doc.get("type", event)
        if kind == "message_start":
            msg = doc["message"]
            self.id, self.model = str(msg.get("id") or ""), str(msg.get("model") or self.model)
            self.usage.update(msg.get("usage") or {})
            first = self.chunk({"role": "assistant", "content": ""})
            if changed := msg.get("input_transformations"):  # thinking blocks the API dropped or let through
                first["input_transformations"] = changed
            return [first]
        if kind == "content_block_start":
            return self._block_start(doc["index"], doc["content_block"])
        if kind == "content_block_delta":
            return self._block_delta(doc["index"], doc["delta"])
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (doc.get("usage") or {}).items() if v is not None})
            reason = doc["delta"].get("stop_reason")
            if reason == "refusal":
                self.refused = True
                return [self.chunk({"refusal": refusal_text(doc["delta"].get("stop_details"))}, "content_filter")]
            if not reason:
                return []
            last = self.chunk({}, FINISH.get(reason, "stop"))
            if (matched := _matched(doc["delta"])) is not None:
                cast(dict[str, Any], last["choices"][0])["stop_reason"] = matched
            return [last]
        if kind == "message_stop":
            self.stopped = True
            if self.refused and not self.said and not self.tools and not self.thinking.entries:
                return [usage_chunk(self.id, self.model, make_usage(0, 0))]  # declined before any output: not billed
            return [usage_chunk(self.id, self.model, _usage(self.usage))]
        return []  # ping, content_block_stop, and event types added after this was written

    def _block_start(self, index: int, block: dict[str, Any]) -> list[ChatChunk]:
        if block["type"] == "tool_use":
            self.tools[index] = n = len(self.tools)
            fn = {"name": block["name"], "arguments": ""}
            return [self.chunk({"tool_calls": [{"index": n, "id": block["id"], "type": "function", "function": fn}]})]
        if block["type"] == "text" and block.get("text"):
            return self._text(block["text"])
        if (detail := self.thinking.start(index, block, self.said)) is not None:
            return [self.chunk({"reasoning_details": [detail]})]
        return []

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[ChatChunk]:
        kind = delta["type"]
        if kind == "text_delta":
            return self._text(delta["text"])
        if kind == "thinking_delta":
            out: Delta = {"reasoning_content": delta["thinking"]}
            if (piece := self.thinking.piece(index, "text", delta["thinking"])) is not None:
                out["reasoning_details"] = [piece]
            return [self.chunk(out)]
        if kind == "signature_delta":
            piece = self.thinking.piece(index, "signature", delta["signature"])
            return [self.chunk({"reasoning_details": [piece]})] if piece else []
        if kind == "input_json_delta" and delta.get("partial_json"):
            call = {"index": self.tools[index], "function": {"arguments": delta["partial_json"]}}
            return [self.chunk({"tool_calls": [call]})]
        return []  # citations_delta

    def _text(self, text: str) -> list[ChatChunk]:
        text = self.rejoin.feed(text)
        self.said += len(text)
        return [self.chunk({"content": text})] if text else []


class _Rejoin:
    """Drops the whitespace a prefill continuation re-emits after the stripped prefix.

    The client already holds the prefix with its trailing whitespace; the model, sent
    the stripped prefix, usually starts with that whitespace again. Up to as many
    leading whitespace characters as were stripped are dropped, once.
    """

    def __init__(self, prefix: str) -> None:
        self.budget = len(prefix) - len(prefix.rstrip())

    def feed(self, text: str) -> str:
        while self.budget and text and text[0].isspace():
            text, self.budget = text[1:], self.budget - 1
        if text:
            self.budget = 0
        return text


def _matched(ending: dict[str, Any]) -> str | None:
    """The stop sequence Claude ended on (``stop_sequence`` beside ``stop_reason: "stop_sequence"``), kept on the
    chat choice as vLLM's ``stop_reason``: chat's finish_reason says "stop" for it as for a natural end."""
    seq = ending.get("stop_sequence")
    return seq if ending.get("stop_reason") == "stop_sequence" and isinstance(seq, str) else None


def _usage(u: dict[str, Any]) -> Usage:
    # Cached input is still input: the prompt is the sum of the three counts, and the part read from the cache is
    # OpenAI's prompt_tokens_details.cached_tokens.
    read = [token_count(u.get(k)) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
                                            "output_tokens")]
    if None in read:  # a count that is not one: the gateway's read of usage refuses it, and estimates
        return cast(Usage, {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None})
    fresh, created, cached, out = cast(list[int], read)
    usage: dict[str, Any] = dict(make_usage(fresh + created + cached, out))
    details: dict[str, int] = {}
    if cached:
        details["cached_tokens"] = cached
    if created:  # written to the cache, billed above the input price (polyroute.fleet.ModelEntry.cost)
        details["cache_write_tokens"] = created  # OpenRouter's name for them
        split = u.get("cache_creation")
        hour = token_count(split.get("ephemeral_1h_input_tokens")) if isinstance(split, dict) else None
        if hour:
            details["cache_write_1h_tokens"] = min(hour, created)
    if details:
        usage["prompt_tokens_details"] = details
    return cast(Usage, usage)


def _tool(fn: dict[str, Any]) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        tool["description"] = fn["description"]
    tool["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
    return tool


def _allowed(tools: list[dict[str, Any]], choice: str | dict[str, Any] | None,
             ) -> tuple[list[dict[str, Any]], str | dict[str, Any] | None]:
    """OpenAI's ``allowed_tools`` choice (a subset of the tools, in mode ``auto`` or ``required``) as Claude takes
    it: only those tools, and the mode as the choice."""
    if not isinstance(choice, dict) or choice.get("type") != "allowed_tools":
        return tools, choice
    allowed = choice.get("allowed_tools") or {}
    names = {(t.get("function") or {}).get("name") for t in allowed.get("tools") or () if isinstance(t, dict)}
    return [t for t in tools if t["function"].get("name") in names], allowed.get("mode", "auto")


def _tool_choice(choice: str | dict[str, Any] | None, extras: dict[str, Any]) -> dict[str, Any] | None:
    out: dict[str, Any] | None = None
    if isinstance(choice, dict):
        out = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    elif choice is not None:
        out = TOOL_CHOICE.get(choice)
    if extras.get("parallel_tool_calls") is False and (out is None or out["type"] != "none"):
        out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
    return out
