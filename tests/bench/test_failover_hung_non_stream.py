"""The hung-non-stream scenario of bench/failover: its config parses and, by default, leads to assembled answers."""

from __future__ import annotations

from bench.failover.scenarios import FIRST_TOKEN_TIMEOUT, HEALTHY_ANSWER, SCENARIOS, gateway_config
from polyroute.adapters import build_adapter
from polyroute.config import parse


def test_hung_non_stream_backends_assemble() -> None:
    (s,) = [s for s in SCENARIOS if s.name == "hung-non-stream"]
    assert not s.stream and s.where == "before"
    assert s.budget == FIRST_TOKEN_TIMEOUT + HEALTHY_ANSWER
    config = parse(gateway_config("http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1", "meets"))
    for name in ("hung-non-stream-primary", "hung-non-stream-fallback"):
        assert "assemble_from_stream" not in config.backends[name].model_fields_set
        assert build_adapter(name, config.backends[name]).assembles
