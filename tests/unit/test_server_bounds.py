"""Bounds on one chat request's work: each limit at its edge, and the field a 400 names."""

from __future__ import annotations

import orjson
import pytest

from polyroute import config as cfg
from polyroute.errors import InvalidRequest
from polyroute.server.bounds import Bounds
from polyroute.server.chat import parse_request

BOUNDS = Bounds(max_messages=10, max_content_parts=6, max_json_depth=8)


def _messages(n: int) -> list[dict[str, object]]:
    return [{"role": "user", "content": f"m{i}"} for i in range(n)]


def _refused(doc: object, bounds: Bounds = BOUNDS) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(orjson.dumps(doc) if not isinstance(doc, bytes) else doc, bounds)
    return caught.value


def test_messages_up_to_the_limit_pass_and_one_more_is_refused() -> None:
    assert len(parse_request(orjson.dumps({"model": "m", "messages": _messages(10)}), BOUNDS).messages) == 10
    err = _refused({"model": "m", "messages": _messages(11)})
    assert (err.param, err.code, err.status) == ("messages", "array_above_max_length", 400)


def test_messages_are_counted_even_without_a_role_key_in_the_bytes() -> None:
    err = _refused({"model": "m", "messages": [{"content": "x"}] * 11})
    assert err.param == "messages"


def test_content_parts_are_counted_over_all_messages() -> None:
    part = {"type": "text", "text": "x"}
    doc = {"model": "m", "messages": [{"role": "user", "content": [part] * 3}] * 2}
    assert parse_request(orjson.dumps(doc), BOUNDS).messages[1].text() == "xxx"
    doc["messages"].append({"role": "user", "content": [part]})  # type: ignore[attr-defined]
    assert _refused(doc).param == "messages[2].content"


def test_depth_at_the_limit_passes_and_one_more_level_is_refused() -> None:
    # Containers count: the body is level 1, metadata 2, then six lists: 8.
    at_limit = {"model": "m", "messages": _messages(1), "metadata": {"a": [[[[[[1]]]]]]}}
    parse_request(orjson.dumps(at_limit), BOUNDS)
    over = {"model": "m", "messages": _messages(1), "metadata": {"a": [[[[[[[1]]]]]]]}}
    err = _refused(over)
    assert (err.param, err.code) == ("metadata.a[0][0]", "nesting_too_deep")


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    text = "[" * 100 + "{" * 100
    assert parse_request(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}), BOUNDS)


def test_past_the_parsers_own_limit_the_field_is_found_in_the_bytes() -> None:
    body = b'{"model":"m","messages":[{"role":"user","content":"a, [b"}],"tools":[1,"x,[",' + b"[" * 3000
    err = _refused(body)
    assert err.param is not None and err.param.startswith("tools[2]")


def test_invalid_json_that_is_not_deep_stays_a_plain_invalid_json_error() -> None:
    err = _refused(b'{"model": "m", "messages": [}')
    assert err.param is None and "not valid JSON" in err.message


def test_the_limits_are_config_keys_with_defaults() -> None:
    gw = cfg.parse({}, source="<test>", env={}).gateway
    assert (gw.max_messages, gw.max_content_parts, gw.max_json_depth) == (2048, 4096, 64)
    with pytest.raises(cfg.ConfigError, match="max_json_depth"):
        cfg.parse({"gateway": {"max_json_depth": 250}}, source="<test>", env={})
