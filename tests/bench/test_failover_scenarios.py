"""bench/failover: the generated gateway config is valid, and the sibling goal holds the right thing."""

from __future__ import annotations

from typing import Any

import pytest

from bench.failover.report import goal
from bench.failover.scenarios import MODES, SCENARIOS, gateway_config, sibling_of
from polyroute import config as cfg
from tests.support.fault_upstream import Fault, documented_error


@pytest.mark.parametrize("mode", MODES)
def test_generated_config_parses(mode: str) -> None:
    raw = gateway_config("http://127.0.0.1:9/v1", "http://127.0.0.1:8/v1", mode)
    config = cfg.parse(raw, source="<bench>", env={})
    shared = config.routes["shared-backend"].models
    assert [config.models[m].backend for m in shared] == ["shared-backend-primary"] * 2 + ["shared-backend-fallback"]


def test_documented_faults_exist() -> None:
    for s in SCENARIOS:
        fault = Fault.parse(s.fault)
        if fault.errfile:
            status, body, _ = documented_error(fault.errfile)
            assert status >= 400 and body


def figures(answered_by: dict[str, int]) -> dict[str, Any]:
    return {"success_pct": 100.0, "ttft_ms": {"max": 1.0}, "answered_by": answered_by}


def test_the_shared_backend_goal_wants_every_answer_from_the_sibling() -> None:
    s = next(s for s in SCENARIOS if s.sibling)
    assert goal(s, figures({sibling_of(s): 160}))[0]
    ok, why = goal(s, figures({sibling_of(s): 150, "shared-backend-fallback": 10}))
    assert not ok and "sibling" in why
