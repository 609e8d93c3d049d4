"""Text completions from the bundled SmolLM2 through llama.cpp in-process: the prompt as it is, no template."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.live import Live, live_gateway

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    config = {
        "backends": {"local": {"type": "llamacpp", "model_path": "embedded", "n_ctx": 512, "n_threads": 1}},
        "models": {"smol": {"backend": "local", "family": "smollm2-135m"}},
    }
    with live_gateway(config) as g:
        yield g


def client(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)


def test_the_bundled_model_completes_a_prompt(live: Live) -> None:
    raw = client(live).completions.with_raw_response.create(model="smol", prompt=PROMPT, max_tokens=8,
                                                            temperature=0, seed=1)
    resp = raw.parse()
    assert resp.object == "text_completion" and resp.model == "smol"
    choice = resp.choices[0]
    assert "Paris" in choice.text  # a real model continuing the text, not an echo of it
    assert not choice.text.startswith(PROMPT)  # no echo unless asked
    assert choice.finish_reason in ("stop", "length")
    assert resp.usage is not None and resp.usage.prompt_tokens > 0 and 0 < resp.usage.completion_tokens <= 8
    assert raw.headers["x-polyroute-backend"] == "local" and float(raw.headers["x-polyroute-cost-usd"]) == 0.0


def test_the_bundled_model_streams_with_usage_and_echoes_when_asked(live: Live) -> None:
    chunks = list(client(live).completions.create(model="smol", prompt=PROMPT, max_tokens=8, temperature=0, seed=1,
                                                  echo=True, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text.startswith(PROMPT) and "Paris" in text[len(PROMPT):]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize(("asked", "param"), [
    ({"suffix": "\nis a city"}, "suffix"), ({"n": 2}, "n"), ({"logprobs": 1}, "logprobs"),
    ({"prompt": ["one", "two"]}, "prompt"),
])
def test_what_llamacpp_cannot_do_is_a_400_naming_it(live: Live, asked: dict[str, object], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(live).completions.create(**{"model": "smol", "prompt": PROMPT, **asked})  # type: ignore[call-overload]
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert "llama.cpp" in caught.value.message


def test_echo_puts_the_prompt_before_the_whole_completion(live: Live) -> None:
    resp = client(live).completions.create(model="smol", prompt=PROMPT, max_tokens=4, temperature=0, echo=True)
    assert resp.choices[0].text.startswith(PROMPT + " ")


def test_a_prompt_of_token_ids_is_completed_and_echoed_as_text(live: Live) -> None:
    model = live.gateway.fleet.adapters["local"]._model  # type: ignore[attr-defined]
    ids = model.tokenize(PROMPT.encode(), add_bos=False)
    resp = client(live).completions.create(model="smol", prompt=ids, max_tokens=4, temperature=0, echo=True)
    assert resp.choices[0].text.startswith(PROMPT)
    assert resp.usage is not None and resp.usage.prompt_tokens == len(ids)
