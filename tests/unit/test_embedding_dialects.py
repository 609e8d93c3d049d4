"""Which OpenAI-wire embeddings server a backend is, and the body and refusals each one gets."""

from __future__ import annotations

import pytest

from polyroute.adapters import build_adapter
from polyroute.config import OllamaBackend, OpenAIBackend
from polyroute.embeddings.dialects import GEMINI, MISTRAL, OPENAI, Dialect, dialect_of
from polyroute.embeddings.types import EmbeddingRequest


def request(**fields: object) -> EmbeddingRequest:
    return EmbeddingRequest.from_json({"model": "m", "input": ["a", "b"], **fields})


@pytest.mark.parametrize(("base_url", "provider", "expected"), [
    ("https://api.mistral.ai/v1", None, MISTRAL),
    ("https://generativelanguage.googleapis.com/v1beta/openai", None, GEMINI),
    ("http://127.0.0.1:9000/v1", "mistral", MISTRAL),
    ("http://127.0.0.1:9000/v1", "Gemini", GEMINI),
    # Vertex AI's OpenAI-compatible endpoint is not the Gemini API: OpenAI's rules there.
    ("https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/endpoints/openapi", None,
     OPENAI),
    ("https://api.openai.com/v1", None, OPENAI),
    # A provider named wins over the host: a relay in front of Mistral that says it is OpenRouter is OpenRouter.
    ("https://api.mistral.ai/v1", "openrouter", OPENAI),
])
def test_an_openai_wire_backend_is_known_by_provider_or_host(base_url: str, provider: str | None,
                                                             expected: Dialect) -> None:
    adapter = build_adapter("b", OpenAIBackend(type="openai", base_url=base_url, provider=provider))
    assert dialect_of(adapter) is expected


def test_another_wire_format_translates_for_itself() -> None:
    adapter = build_adapter("o", OllamaBackend(type="ollama", base_url="https://api.mistral.ai", provider="mistral"))
    assert dialect_of(adapter) is OPENAI


def test_mistrals_body_renames_dimensions_and_leaves_user_out() -> None:
    req = request(dimensions=512, user="u-1", output_dtype="float", metadata={"k": "v"})
    body = MISTRAL.request(req).upstream_body("codestral-embed")
    assert body == {"model": "codestral-embed", "input": ["a", "b"], "encoding_format": "float",
                    "output_dimension": 512, "output_dtype": "float", "metadata": {"k": "v"}}
    # The client's request is untouched: another candidate of the route gets OpenAI's words.
    assert OPENAI.request(req).upstream_body("x") == {"model": "x", "input": ["a", "b"], "encoding_format": "float",
                                                      "dimensions": 512, "user": "u-1", "output_dtype": "float",
                                                      "metadata": {"k": "v"}}


def test_geminis_body_is_openais() -> None:
    req = request(dimensions=768)
    assert GEMINI.request(req).upstream_body("gemini-embedding-001") == {
        "model": "gemini-embedding-001", "input": ["a", "b"], "encoding_format": "float", "dimensions": 768}


@pytest.mark.parametrize(("dialect", "fields", "param", "words"), [
    (MISTRAL, {"input": [[1, 2], [3]]}, "input", "mistral embeds text, not token ids"),
    (GEMINI, {"input": [7, 8, 9]}, "input", "gemini embeds text, not token ids"),
    (GEMINI, {"input": ["x"] * 101}, "input", "at most 100 inputs a request, not 101"),
    (MISTRAL, {"output_dtype": "binary"}, "output_dtype", "'binary'"),
])
def test_what_a_server_cannot_take_is_named(dialect: Dialect, fields: dict[str, object], param: str,
                                             words: str) -> None:
    refusal = dialect.refusal(request(**fields))
    assert refusal is not None and refusal[0] == param and words in refusal[1]


@pytest.mark.parametrize(("dialect", "fields"), [
    (GEMINI, {"input": ["x"] * 100}),
    (MISTRAL, {"output_dtype": "float", "dimensions": 256}),
    (OPENAI, {"input": [[1, 2]], "output_dtype": "int8"}),
])
def test_what_a_server_takes_is_not_refused(dialect: Dialect, fields: dict[str, object]) -> None:
    assert dialect.refusal(request(**fields)) is None
