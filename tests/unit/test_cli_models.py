"""``polyroute models``: table, filters, JSON and errors, through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from polyroute.catalog import load_catalog
from polyroute.cli import main
from polyroute.cli.models import format_tokens

HEADER = [
    "id",
    "name",
    "origin",
    "licence",
    "open",
    "context",
    "$/Mtok",
    "in/out",
    "capabilities",
    "served",
    "by",
    "key",
]


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test with no provider key set, whatever the developer's shell holds."""
    for family in load_catalog().families.values():
        for offer in family.offers:
            monkeypatch.delenv(offer.key_env, raising=False)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["models", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _rows(out: str) -> dict[str, str]:
    lines = out.splitlines()
    assert lines[0].split() == HEADER
    return {line.split()[0]: line for line in lines[1:]}


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    code, out, _ = _run(capsys, "--json", *args)
    assert code == 0
    data = json.loads(out)
    assert isinstance(data, list)
    return data


def test_table_lists_every_family_with_aligned_columns(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys)
    assert code == 0 and err == ""
    rows = _rows(out)
    assert set(rows) == set(load_catalog().families)
    lines = out.splitlines()
    # Every column starts at the same offset on every line.
    name_at = lines[0].index("name")
    key_at = lines[0].index("key")
    assert all(line[name_at - 2 : name_at] == "  " and line[name_at] != " " for line in lines)
    assert all(len(line) >= key_at for line in lines)


def test_table_row_content(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(_run(capsys)[1])
    ds = rows["deepseek-v3"]
    assert "DeepSeek, CN" in ds and " MIT " in ds and " yes " in ds
    assert " 128K " in ds and " 0.28/0.42 " in ds and "tools,json_mode" in ds
    assert "deepseek, fireworks" in ds
    gpt = rows["gpt-4-1"]
    assert "OpenAI, US" in gpt and " proprietary " in gpt and " no " in gpt and " 2/8 " in gpt
    smol = rows["smollm2-135m"]
    assert " 8K " in smol and " 0/0 " in smol and " local " in smol
    assert smol.endswith("n/a")


def test_key_column_follows_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _rows(_run(capsys)[1])
    assert rows["deepseek-v3"].endswith(" no")
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test")
    rows = _rows(_run(capsys)[1])
    assert rows["deepseek-v3"].endswith(" yes")
    assert rows["deepseek-r1"].endswith(" yes")
    assert rows["gpt-4-1"].endswith(" no")


def test_open_weights_filter(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(_run(capsys, "--open-weights")[1])
    assert {"llama-3-3-70b", "deepseek-v3", "smollm2-135m"} <= set(rows)
    assert not {"gpt-4-1", "claude-sonnet-4-5", "qwen3-max"} & set(rows)


def test_origin_filter_by_country_and_organisation(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(_run(capsys, "--origin", "cn")[1])
    assert rows and all(", CN " in line for line in rows.values())
    assert {"kimi-k2", "glm-4-6", "ernie-4-5"} <= set(rows)
    rows = _rows(_run(capsys, "--origin", "Anthropic")[1])
    assert set(rows) == {"claude-sonnet-4-5", "claude-haiku-4-5"}


def test_max_price_filter(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, "--max-price", "0.5")
    ids = {f["id"] for f in data}
    assert {"deepseek-v3", "smollm2-135m"} <= ids
    assert "gpt-4-1" not in ids
    for family in data:
        price = family["price"]
        assert (price["input_per_mtok"] + price["output_per_mtok"]) / 2 <= 0.5


def test_local_filter(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(_run(capsys, "--local")[1])
    assert list(rows) == ["smollm2-135m"]


def test_filters_combine_and_an_empty_result_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--local", "--origin", "CN")
    assert code == 0
    assert out == "No model family matches these filters.\n"
    assert _json(capsys, "--local", "--origin", "CN") == []


def test_json_output_is_machine_readable(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    data = {f["id"]: f for f in _json(capsys)}
    sonnet = data["claude-sonnet-4-5"]
    assert sonnet["price"] == {"input_per_mtok": 3.0, "output_per_mtok": 15.0}
    assert sonnet["cheapest_offer"] == {"provider": "anthropic", "model": "claude-sonnet-4-5"}
    assert sonnet["key_set"] is True
    assert sonnet["offers"][0]["price_date"] == "2026-11-22"
    assert sonnet["offers"][0]["continuation"] == "prefill"
    assert data["gpt-4-1"]["key_set"] is False
    assert data["smollm2-135m"]["cheapest_offer"] is None and data["smollm2-135m"]["local"] is True


def test_a_bad_catalog_file_is_reported_not_raised(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[families.x]\nname = "X"\nflavour = "mint"\n', encoding="utf-8")
    code, out, err = _run(capsys, "--catalog", str(path))
    assert code == 2 and out == ""
    assert str(path) in err and "families.x.flavour" in err and "unknown key" in err


def test_negative_max_price_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["models", "--max-price", "-1"])
    assert info.value.code == 2
    assert "--max-price" in capsys.readouterr().err


def test_help_explains_the_columns_and_filters(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["models", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--open-weights", "--origin", "--max-price", "--local", "--json", "--catalog"):
        assert flag in out
    assert "per million tokens" in out


@pytest.mark.parametrize(
    ("tokens", "shown"),
    [
        (8192, "8K"),
        (131072, "128K"),
        (200000, "200K"),
        (204800, "200K"),
        (1048576, "1M"),
        (1047576, "1.05M"),
        (512, "512"),
    ],
)
def test_format_tokens(tokens: int, shown: str) -> None:
    assert format_tokens(tokens) == shown
