"""The Messages API over the bundled SmolLM2 model: a real generation, read by the ``anthropic`` SDK."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest

from polyroute.settings import effective_config
from tests.support.live import Live, live_gateway


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    # The embedded default with an empty environment: no keys, so only the local model.
    with live_gateway(effective_config(None, env={})) as g:
        yield g


def test_the_bundled_model_answers_whole_and_streamed(live: Live) -> None:
    client = anthropic.Anthropic(base_url=live.root, api_key="unused", max_retries=0)
    ask: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Which city is the capital of France?"}]
    message = client.messages.create(model="default", max_tokens=24, messages=ask,
                                     extra_body={"temperature": 0})
    assert message.content[0].type == "text" and "Paris" in message.content[0].text
    assert message.model == "smollm2-135m" and 0 < message.usage.output_tokens <= 24
    assert message.stop_reason in ("end_turn", "max_tokens")
    with client.messages.stream(model="smollm2-135m", max_tokens=12, extra_body={"temperature": 0},
                                messages=[{"role": "user", "content": "Name a colour."}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() and final.usage.output_tokens > 0
