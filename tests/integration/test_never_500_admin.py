"""The admin API, the usage reports and feedback: whatever is sent, a success or an OpenAI-shaped 4xx, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_never_500 import json_values
from tests.support.live import Live, live_gateway

ADMIN = "sk-admin-0123456789abcdef"
CLIENT = "sk-client-0123456789abcdef"
KEY_FIELDS = ["name", "team", "policy", "routes", "budget_usd", "budget_period", "rpm", "tpm", "expires_at"]
numbers = st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
key_bodies = st.fixed_dictionaries(
    {"name": st.from_regex(r"[a-z]{1,8}", fullmatch=True) | json_values},
    optional={f: json_values | numbers | st.sampled_from(["day", "week", "month", "total", "2027-01-01"])
              for f in KEY_FIELDS[1:]},
)
query_values = st.text(max_size=20) | st.from_regex(r"\d{1,30}[mhdwy]", fullmatch=True) | st.sampled_from(
    ["key", "team", "model", "route", "day", "csv", "json", "table", "2026-12-01", "-1d"])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    store: Path = tmp_path_factory.mktemp("store") / "s.db"
    raw = {
        "backends": {"f": {"type": "fake"}}, "models": {"echo": {"backend": "f"}},
        "admin": {"secret": "env:ADMIN"}, "store": {"url": f"sqlite:///{store}"},
        "keys": {"client": {"secret": "env:CLIENT", "budget_usd": 10.0}},
    }
    with live_gateway(raw, env={"ADMIN": ADMIN, "CLIENT": CLIENT}) as g:
        yield g


def check(resp: httpx.Response) -> None:
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        err = resp.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert ADMIN not in resp.text


def root(live: Live) -> str:
    return live.base_url.removesuffix("/v1")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=key_bodies, method=st.sampled_from(["POST", "PATCH"]), kind=st.sampled_from(["keys", "teams"]))
def test_admin_bodies_never_500(live: Live, body: dict[str, Any], method: str, kind: str) -> None:
    name = body.get("name") if isinstance(body.get("name"), str) else "x"
    path = f"/admin/{kind}" if method == "POST" else f"/admin/{kind}/{quote(str(name), safe='')}"
    with httpx.Client(timeout=10, headers={"authorization": f"Bearer {ADMIN}"}) as client:
        check(client.request(method, root(live) + path, content=json.dumps(body),
                             headers={"content-type": "application/json"}))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(since=query_values, by=query_values, fmt=query_values)
def test_usage_queries_never_500(live: Live, since: str, by: str, fmt: str) -> None:
    params = {"since": since, "by": by, "format": fmt}
    with httpx.Client(timeout=10) as client:
        check(client.get(root(live) + "/admin/usage", params=params, headers={"authorization": f"Bearer {ADMIN}"}))
        check(client.get(live.base_url + "/usage", params=params, headers={"authorization": f"Bearer {CLIENT}"}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values | st.fixed_dictionaries({"id": json_values, "score": json_values | numbers}))
def test_feedback_bodies_never_500(live: Live, body: Any) -> None:
    with httpx.Client(timeout=10) as client:
        check(client.post(live.base_url + "/feedback", content=json.dumps(body),
                          headers={"content-type": "application/json", "authorization": f"Bearer {CLIENT}"}))
