"""``polyroute models``: table, filters, JSON and errors, through the real entry point."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import subprocess
import sys
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
    ds = rows["deepseek-v4-flash"]
    assert "DeepSeek, CN" in ds and " MIT " in ds and " yes " in ds
    assert " 1M " in ds and " 0.3/1.2 " in ds and "tools,json_mode,vision,reasoning" in ds
    assert " deepseek " in ds
    assert "deepseek, fireworks" in rows["deepseek-v4-pro"]
    gpt = rows["gpt-4-1"]
    assert "OpenAI, US" in gpt and " proprietary " in gpt and " no " in gpt and " 2/8 " in gpt
    smol = rows["smollm2-135m"]
    assert " 8K " in smol and " 0/0 " in smol and " local " in smol
    assert smol.endswith("n/a")


def test_key_column_follows_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _rows(_run(capsys)[1])
    assert rows["deepseek-v4-flash"].endswith(" no")
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test")
    rows = _rows(_run(capsys)[1])
    assert rows["deepseek-v4-flash"].endswith(" yes")
    assert rows["deepseek-v4-pro"].endswith(" yes")
    assert rows["gpt-4-1"].endswith(" no")


def test_open_weights_filter(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(_run(capsys, "--open-weights")[1])
    assert {"llama-3-3-70b", "deepseek-v4-flash", "smollm2-135m"} <= set(rows)
    assert not {"gpt-4-1", "claude-sonnet-4-5", "qwen3-max"} & set(rows)


def test_origin_filter_by_country_and_organisation(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(_run(capsys, "--origin", "cn")[1])
    assert rows and all(", CN " in line for line in rows.values())
    assert {"kimi-k2-6", "glm-4-6", "ernie-4-5"} <= set(rows)
    rows = _rows(_run(capsys, "--origin", "Anthropic")[1])
    assert set(rows) == {
        "claude-fable-5-2", "claude-fable-5-1", "claude-opus-5-5", "claude-sonnet-5-5", "claude-sonnet-4-5",
        "claude-haiku-5-5", "claude-haiku-4-5",
    }


def test_max_price_filter(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, "--max-price", "0.5")
    ids = {f["id"] for f in data}
    assert {"qwen3-8b", "llama-3-3-70b", "smollm2-135m"} <= ids
    assert not {"gpt-4-1", "deepseek-v4-flash"} & ids  # the latter's mean list price is 0.75
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
    sonnet = data["claude-sonnet-5-5"]
    assert sonnet["price"] == {"input_per_mtok": 2.0, "output_per_mtok": 10.0}
    assert sonnet["cheapest_offer"] == {"provider": "anthropic", "model": "claude-sonnet-5-5"}
    assert sonnet["key_set"] is True
    assert sonnet["offers"][0]["price_date"] == "2026-12-06"
    assert sonnet["offers"][0]["continuation"] == "prefill"
    assert sonnet["offers"][0]["cached_input_per_mtok"] == 0.1
    flash = data["deepseek-v4-flash"]["offers"][0]
    assert (flash["off_peak_input_per_mtok"], flash["off_peak_output_per_mtok"]) == (0.15, 0.6)
    assert flash["peak_hours_utc"] == ["01:00-04:00", "06:00-10:00"] and flash["peak_weekdays_only"] is True
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
    for flag in ("--open-weights", "--origin", "--max-price", "--local", "--json", "--catalog", "--config", "--stale"):
        assert flag in out
    assert "per million tokens" in out


@pytest.mark.parametrize(
    ("tokens", "shown"),
    [
        (8192, "8K"),
        (131072, "128K"),
        (200000, "200K"),
        (204800, "200K"),
        (256000, "256K"),  # a multiple of 1024 too, but quoted in decimal
        (1000000, "1M"),
        (1048576, "1M"),
        (1047576, "1.05M"),
        (512, "512"),
    ],
)
def test_format_tokens(tokens: int, shown: str) -> None:
    assert format_tokens(tokens) == shown


# --- --stale: a linter's answer for CI --------------------------------------------------


def _dated_catalog(tmp_path: Path, *dates: dt.date) -> Path:
    """A catalog of one family with an offer read on each date (models acme-0, acme-1, ...)."""
    text = [
        '[families.acme-one]\nname = "Acme One"\norganisation = "Acme Labs"\ncountry = "FR"\n'
        'licence = "Apache-2.0"\nopen_weights = true\ncontext_window = 32768\n'
    ]
    for i, day in enumerate(dates):
        text.append(
            f'[[families.acme-one.offers]]\nprovider = "acme"\nwire = "openai"\n'
            f'base_url = "https://api.acme.test/v1"\nmodel = "acme-{i}"\nkey_env = "ACME_API_KEY"\n'
            f"input_per_mtok = 1.0\noutput_per_mtok = 3.0\nprice_source = \"https://acme.test/pricing/{i}\"\n"
            f"price_date = {day.isoformat()}\n"
        )
    path = tmp_path / "dated.toml"
    path.write_text("\n".join(text), encoding="utf-8")
    return path


def test_stale_lists_old_prices_with_date_and_source_and_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    old, older = today - dt.timedelta(days=91), today - dt.timedelta(days=400)
    path = _dated_catalog(tmp_path, today, old, older, today - dt.timedelta(days=90))
    code, out, err = _run(capsys, "--catalog", str(path), "--stale", "90")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == ["family", "provider", "model", "price", "read", "days", "source"]
    # Oldest first; exactly 90 days old is not stale yet.
    assert [line.split()[2] for line in lines[1:]] == ["acme-2", "acme-1"]
    assert older.isoformat() in lines[1] and " 400 " in lines[1] and "https://acme.test/pricing/2" in lines[1]
    assert "2 offer(s) priced more than 90 days ago" in err


def test_stale_exits_0_when_every_price_is_fresh(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _dated_catalog(tmp_path, dt.datetime.now(dt.UTC).date())
    code, out, err = _run(capsys, "--catalog", str(path), "--stale", "90")
    assert (code, err) == (0, "")
    assert out == "Every offer's price was read in the last 90 days.\n"


def test_stale_as_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=120)
    path = _dated_catalog(tmp_path, day)
    code, out, _ = _run(capsys, "--catalog", str(path), "--stale", "30", "--json")
    assert code == 1
    assert json.loads(out) == [{
        "family": "acme-one", "provider": "acme", "model": "acme-0", "price_date": day.isoformat(),
        "age_days": 120, "price_source": "https://acme.test/pricing/0",
    }]


def test_stale_over_the_shipped_catalog_names_real_offers(capsys: pytest.CaptureFixture[str]) -> None:
    catalog = load_catalog()
    oldest = min(o.price_date for _, o in catalog.offers())
    age = (dt.datetime.now(dt.UTC).date() - oldest).days
    code, out, _ = _run(capsys, "--stale", str(age - 1))
    assert code == 1 and oldest.isoformat() in out
    code, _, _ = _run(capsys, "--stale", str(age))
    assert code == 0


def test_stale_needs_a_whole_number_of_days(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["models", "--stale", "soon"])
    assert info.value.code == 2
    assert "--stale" in capsys.readouterr().err


# --- --config: the [catalog] files of a config ---------------------------------------------


def test_config_lays_its_catalog_files_over_the_shipped_catalog(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "ours.toml").write_text(
        '[families.deepseek-v4-flash]\nname = "Our Flash"\n\n'
        '[[families.deepseek-v4-flash.offers]]\nprovider = "deepseek"\nmodel = "deepseek-flash"\n'
        "input_per_mtok = 0.25\n",
        encoding="utf-8",
    )
    config = tmp_path / "gw.toml"
    config.write_text('[catalog]\nfiles = ["ours.toml"]\n', encoding="utf-8")
    data = {f["id"]: f for f in _json(capsys, "--config", str(config))}
    flash = data["deepseek-v4-flash"]
    assert flash["name"] == "Our Flash"
    assert flash["price"] == {"input_per_mtok": 0.25, "output_per_mtok": 1.2}


# --- a reader that goes away -------------------------------------------------------------


def _pipe_closed_early(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``polyroute models ARGS`` with more output than a pipe holds, and close it after one line."""
    # 1500 families is far more than a pipe buffers (64 KiB on Linux), so the writer is still writing when we close.
    big = tmp_path / "big.toml"
    big.write_text("\n".join(
        f'[families.f{i}]\nname = "Family {i}"\norganisation = "Acme Labs"\ncountry = "FR"\n'
        f'licence = "Apache-2.0"\nopen_weights = true\ncontext_window = 32768\n'
        f'[[families.f{i}.offers]]\nprovider = "acme"\nwire = "openai"\nbase_url = "https://api.acme.test/v1"\n'
        f'model = "m{i}"\nkey_env = "ACME_API_KEY"\ninput_per_mtok = 1.0\noutput_per_mtok = 3.0\n'
        f'price_source = "https://acme.test/pricing"\nprice_date = 2026-01-01\n'
        for i in range(1500)
    ), encoding="utf-8")
    read_end, write_end = os.pipe()
    # Pipes can be large (up to 1 MiB here); shrink this one so the writer surely blocks.
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    assert fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ) <= 65536
    proc = subprocess.Popen(
        [sys.executable, "-m", "polyroute", "models", "--catalog", str(big), *args],
        stdout=write_end, stderr=subprocess.PIPE, env={**os.environ},
    )
    os.close(write_end)
    with open(read_end, "rb") as reader:
        assert reader.readline()  # like `head -1`: read a line, then go away
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    return subprocess.CompletedProcess(proc.args, proc.wait(timeout=60), b"", err)


@pytest.mark.parametrize("args", [("--json",), ()])
def test_a_closed_pipe_ends_quietly(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = _pipe_closed_early(tmp_path, *args)
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr, done.stderr.decode()
    assert done.stderr == b""
    assert done.returncode == 141  # 128 + SIGPIPE, what a shell reports for `cmd | head`
