"""The ``finish_reason`` words of OpenAI-compatible providers, as a client of OpenAI's API reads them.

OpenAI's set is ``stop``, ``length``, ``tool_calls``, ``content_filter`` and the
deprecated ``function_call``. Providers add words of their own, and they mean one
of two things:
- another word for one of OpenAI's: the client gets OpenAI's word, and the
  provider's own in ``native_finish_reason`` (OpenRouter's name for it), so a
  client that tests ``== "content_filter"`` or ``== "length"`` sees the refusal or
  the full context, and one with a strict enum can still parse the answer;
- the provider's own trouble cut the answer short: not an answer at all but a
  failed attempt, which the route continues or retries on another candidate and
  the breaker counts, rather than a short answer delivered and billed as whole.
"""

from __future__ import annotations

from typing import Any

OPENAI = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})

# Sources: Z.ai's chat completion reference (https://docs.z.ai/api-reference/llm/chat-completion:
# "sensitive" is content intercepted by its safety review; "model_context_window_exceeded" when
# the context is full, as Anthropic's stop reason of that name).
AS_OPENAI = {
    "sensitive": "content_filter",
    "model_context_window_exceeded": "length",
    # Mistral's answer cut at the model's own context length (its finish_reason enum; Vercel's AI SDK maps it
    # to length), and the end-of-sequence word some servers behind Together send for a finished answer
    # (https://github.com/vibrantlabsai/ragas/issues/1548).
    "model_length": "length",
    "eos": "stop",
}

# Sources: DeepSeek's chat completion reference (https://api-docs.deepseek.com/api/create-chat-completion:
# "insufficient_system_resource", the request is interrupted for lack of inference resources);
# Z.ai's (above: "network_error", the model's inference failed); OpenRouter's streaming reference
# (https://openrouter.ai/docs/api-reference/streaming: "error" ends a stream cut by the provider).
INTERRUPTED = {
    "insufficient_system_resource": "the provider ran out of inference capacity and cut the answer short",
    "network_error": "the provider's inference failed and cut the answer short",
    "error": "the provider ended the answer with an error",
}


def foreign(finish: object) -> bool:
    """A finish word that is not OpenAI's (a provider's own; any odd value passes through as it came)."""
    return isinstance(finish, str) and finish not in OPENAI


def translate(choice: dict[str, Any], finish: str) -> str | None:
    """Put OpenAI's word for ``finish`` in ``choice``; if it says the answer was cut short, why (and no finish)."""
    cut = INTERRUPTED.get(finish)
    if cut is not None:
        choice["finish_reason"] = None
        return f"{cut} (finish_reason {finish!r})"
    word = AS_OPENAI.get(finish)
    if word is not None:
        choice["finish_reason"] = word
        choice.setdefault("native_finish_reason", finish)
    return None
