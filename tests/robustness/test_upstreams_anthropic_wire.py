"""``/v1/messages`` and ``/v1/responses`` against hostile upstreams on Anthropic's own wire.

The Messages API most often fronts Claude, whose stream the anthropic adapter reads
(typed events, an ``error`` event after the 200, ``message_stop`` at the end). Each
hostile behaviour (``HostileUpstream``'s ``anth-HOW-N``) has a backend of its own: before
the first token it fails over unseen to a sound Anthropic upstream; after it began,
alone on its route, the client's stream ends as its API ends a failure; never a 500,
a traceback, or an end that reads like a success.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.robustness.hostile_upstream import ANSWER, FLOOD_WORD, HostileUpstream
from tests.robustness.test_upstreams_hostile import Gateway, serving
from tests.robustness.test_upstreams_streams_other_apis import (
    APIS,
    FIRST_TOKEN_TIMEOUT,
    STALL_TIMEOUT,
    body,
    ended_well,
    stream,
    text_of,
    whole_text,
)
from tests.support.clients import gateway_lines
from tests.support.live import free_port

BEFORE = {"cut0": "anth-cut-0", "badjson0": "anth-badjson-0", "text0": "anth-text-0", "error0": "anth-error-0",
          "sseline": "sseline"}
AFTER = {"cut5": "anth-cut-5", "badjson5": "anth-badjson-5", "text5": "anth-text-5", "error5": "anth-error-5"}
# Its message_delta said how it ended: only message_stop (and the usage it would carry) is missing.
NO_STOP = {"nostop5": "anth-nostop-5"}


def _backend(up: HostileUpstream, name: str, upstream: str) -> list[str]:
    return [f"[backends.{name}]", 'type = "anthropic"', f'base_url = "{up.base_url}"', 'api_key = "env:UP_KEY"',
            f"[models.{name}]", f'backend = "{name}"', f'upstream = "{upstream}"']


def _config(port: int, up: HostileUpstream) -> str:
    def backend(name: str, upstream: str) -> list[str]:
        return _backend(up, name, upstream)

    def route(name: str, models: list[str]) -> list[str]:
        return [f'[routes."{name}"]', "models = [" + ", ".join(f'"{m}"' for m in models) + "]",
                f"first_token_timeout = {FIRST_TOKEN_TIMEOUT}", f"stall_timeout = {STALL_TIMEOUT}"]

    lines = ["[gateway]", f'listen = "127.0.0.1:{port}"', *gateway_lines(),
             "[gateway.breakers]", "failures = 1000", "min_requests = 1000", *backend("ok", "anth-ok-0")]
    for name, behaviour in (BEFORE | AFTER | NO_STOP).items():
        lines += [*backend(name, behaviour), *route(f"{name}-alone", [name]), *route(f"{name}-then-ok", [name, "ok"])]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def gw(up: HostileUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    port = free_port()
    with serving(tmp_path_factory.mktemp("anth"), port, _config(port, up), {"UP_KEY": "sk-ant-up"}) as gateway:
        yield gateway


@pytest.mark.parametrize("api", APIS)
def test_a_sound_anthropic_stream_reads_whole(gw: Gateway, api: str) -> None:
    resp, seen = stream(gw, api, "ok")
    assert resp.status_code == 200 and ended_well(api, seen) and text_of(api, seen) == ANSWER


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("name", list(BEFORE))
def test_broken_before_its_first_token_it_fails_over_unseen(gw: Gateway, api: str, name: str) -> None:
    resp, seen = stream(gw, api, f"{name}-then-ok")
    assert resp.status_code == 200, resp.text
    assert ended_well(api, seen) and text_of(api, seen) == ANSWER
    assert resp.headers["x-polyroute-model"] == "ok"
    with gw.client(None) as client:
        whole = client.post(f"/v1/{api}", json={**body(api, f"{name}-then-ok"), "stream": False})
        alone = client.post(f"/v1/{api}", json={**body(api, f"{name}-alone"), "stream": False})
    assert whole.status_code == 200 and whole_text(api, whole.json()) == ANSWER, whole.text
    assert alone.status_code in (502, 503, 504), alone.text  # never a 500
    assert "Traceback" not in gw.log.read_text()


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("name", list(AFTER))
def test_broken_after_it_began_it_ends_as_a_failure(gw: Gateway, api: str, name: str) -> None:
    resp, seen = stream(gw, api, f"{name}-alone")
    assert resp.status_code == 200, resp.text
    assert text_of(api, seen) == FLOOD_WORD * 5
    assert not ended_well(api, seen)
    assert "Traceback" not in gw.log.read_text()


@pytest.mark.parametrize("api", APIS)
def test_a_stream_that_said_how_it_ended_but_not_message_stop_is_taken_whole(gw: Gateway, api: str) -> None:
    resp, seen = stream(gw, api, "nostop5-alone")
    assert resp.status_code == 200 and ended_well(api, seen) and text_of(api, seen) == FLOOD_WORD * 5


@pytest.mark.parametrize("api", APIS)
def test_a_message_start_whose_usage_is_a_string_fails_over(
    up: HostileUpstream, tmp_path: Path, api: str
) -> None:
    port = free_port()
    config = "\n".join(["[gateway]", f'listen = "127.0.0.1:{port}"', *gateway_lines(),
                        *_backend(up, "ok", "anth-ok-0"), *_backend(up, "usage", "anth-usage-0"),
                        '[routes."usage-then-ok"]', 'models = ["usage", "ok"]']) + "\n"
    with serving(tmp_path, port, config, {"UP_KEY": "sk-ant-up"}) as gateway:
        resp, seen = stream(gateway, api, "usage-then-ok")
        assert resp.status_code == 200, resp.text
        assert ended_well(api, seen) and text_of(api, seen) == ANSWER
