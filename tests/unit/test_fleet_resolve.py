"""An unknown name gets a 404 listing what exists, and, for a catalog model, how it would join."""

from __future__ import annotations

import pytest

from polyroute import config as cfg
from polyroute.catalog import load_catalog
from polyroute.errors import UnknownModel
from polyroute.fleet import Fleet
from polyroute.settings import effective_config

RAW = {
    "backends": {"f": {"type": "fake"}},
    "models": {"echo": {"backend": "f"}},
}


def refusal(fleet: Fleet, name: str) -> str:
    with pytest.raises(UnknownModel) as info:
        fleet.resolve(name)
    assert info.value.status == 404 and info.value.param == "model"
    return info.value.message


def test_a_catalog_model_on_the_embedded_default_names_its_key_variables() -> None:
    fleet = Fleet.build(effective_config(None, env={}), load_catalog())
    text = refusal(fleet, "deepseek-v4-pro")
    assert "joins the fleet when DEEPSEEK_API_KEY or FIREWORKS_API_KEY is set at start" in text
    assert text.endswith("Known models and routes: default, smollm2-135m")


def test_a_catalog_model_missing_from_a_config_file_says_where_to_add_it() -> None:
    fleet = Fleet.build(cfg.parse(RAW, source="gw.toml", env={}), load_catalog())
    assert "not exist in gw.toml: it is a catalog model; add it under [models]" in refusal(fleet, "kimi-k2-6")


def test_a_name_nobody_knows_lists_what_exists() -> None:
    fleet = Fleet.build(cfg.parse(RAW, source="gw.toml", env={}), load_catalog())
    assert refusal(fleet, "gpt-9") == "The model 'gpt-9' does not exist. Known models and routes: echo"


def test_a_hosted_family_on_a_local_backend_costs_nothing_unless_the_config_prices_it() -> None:
    raw = {
        "backends": {"vllm": {"type": "openai", "base_url": "http://127.0.0.1:8000/v1"},
                     "dashscope": {"type": "openai", "base_url": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"}},
        "models": {"qwen-local": {"backend": "vllm", "family": "qwen3-8b"},
                   "qwen-priced": {"backend": "vllm", "family": "qwen3-8b",
                                   "input_per_mtok": 0.01, "output_per_mtok": 0.02},
                   "qwen-hosted": {"backend": "dashscope", "family": "qwen3-8b"}},
    }
    fleet = Fleet.build(cfg.parse(raw, env={}), load_catalog())
    local, priced, hosted = (fleet.models[n] for n in ("qwen-local", "qwen-priced", "qwen-hosted"))
    assert (local.locality, local.input_per_mtok, local.output_per_mtok, local.price_known) == ("local", 0, 0, True)
    assert (priced.input_per_mtok, priced.output_per_mtok) == (0.01, 0.02)
    assert hosted.locality == "remote" and hosted.input_per_mtok > 0 and hosted.output_per_mtok > 0


def test_a_catalog_offer_is_billed_at_its_time_of_day_and_cached_rates() -> None:
    """DeepSeek bills off-peak hours at half its list rates, and prompt tokens read from its cache at its cached
    rate (api-docs.deepseek.com/quick_start/pricing, as the catalog keeps them); a price the config sets is billed
    as it says."""
    from datetime import UTC, datetime

    from polyroute.attempts import Report
    from polyroute.types import make_usage

    raw = {"backends": {"ds": {"type": "openai", "base_url": "https://api.deepseek.com/v1", "api_key": "env:K"}},
           "models": {"flash": {"backend": "ds", "upstream": "deepseek-flash", "family": "deepseek-v4-flash"},
                      "priced": {"backend": "ds", "upstream": "deepseek-flash", "family": "deepseek-v4-flash",
                                 "input_per_mtok": 1.0, "output_per_mtok": 2.0}}}
    fleet = Fleet.build(cfg.parse(raw, env={"K": "sk-x"}), load_catalog())
    flash, priced = fleet.models["flash"], fleet.models["priced"]
    usage = make_usage(1_000_000, 1_000_000)
    peak = datetime(2026, 12, 7, 2, 30, tzinfo=UTC)  # a Monday, 02:30 UTC: inside 01:00-04:00
    off_peak = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    weekend_peak_hour = datetime(2026, 12, 6, 2, 30, tzinfo=UTC)  # a Sunday: peak hours are weekdays only
    assert flash.cost(usage, at=peak) == pytest.approx(0.30 + 1.20)
    assert flash.cost(usage, at=off_peak) == pytest.approx(0.15 + 0.60)
    assert flash.cost(usage, at=weekend_peak_hour) == pytest.approx(0.15 + 0.60)
    # 800k of the million prompt tokens were cache hits: at the cached rate, halved off-peak as the input is.
    assert flash.cost(usage, cached=800_000, at=peak) == pytest.approx(0.2 * 0.30 + 0.8 * 0.006 + 1.20)
    assert flash.cost(usage, cached=800_000, at=off_peak) == pytest.approx(0.2 * 0.15 + 0.8 * 0.003 + 0.60)
    assert priced.cost(usage, cached=800_000, at=peak) == pytest.approx(1.0 + 2.0)
    # The report reads the cache hits from the usage the provider sent, in OpenAI's field or DeepSeek's own.
    for said in ({"prompt_tokens_details": {"cached_tokens": 800_000}}, {"prompt_cache_hit_tokens": 800_000}):
        report = Report(route="flash")
        assert report.bill(flash, {**make_usage(1_000_000, 0), **said})
        assert report.cost_usd == pytest.approx(flash.cost(make_usage(1_000_000, 0), cached=800_000))
        assert report.cost_usd < flash.cost(make_usage(1_000_000, 0))


def test_claude_s_cache_writes_are_billed_at_anthropic_s_write_rates() -> None:
    """Anthropic bills prompt tokens written to its cache at 1.25x the input price for five minutes and 2x for an
    hour, and reads at its cached rate (platform.claude.com's prompt-caching pricing). Claude's usage says how many of
    each; before, writes were billed as plain input, a quarter to a half of their price lost."""
    from polyroute.adapters.anthropic import _usage
    from polyroute.attempts import Report

    raw = {"backends": {"claude": {"type": "anthropic", "base_url": "https://api.anthropic.com", "api_key": "env:K"}},
           "models": {"sonnet": {"backend": "claude", "upstream": "claude-sonnet-4-5", "family": "claude-sonnet-4-5"}}}
    fleet = Fleet.build(cfg.parse(raw, env={"K": "sk-x"}), load_catalog())
    sonnet = fleet.models["sonnet"]
    price_in, price_cached = sonnet.input_per_mtok, sonnet.offer.cached_input_per_mtok  # type: ignore[union-attr]
    said = {"input_tokens": 100_000, "cache_creation_input_tokens": 600_000, "cache_read_input_tokens": 300_000,
            "cache_creation": {"ephemeral_5m_input_tokens": 400_000, "ephemeral_1h_input_tokens": 200_000},
            "output_tokens": 0}
    usage = _usage(said)
    assert usage["prompt_tokens"] == 1_000_000
    assert usage["prompt_tokens_details"] == {  # type: ignore[typeddict-item]
        "cached_tokens": 300_000, "cache_write_tokens": 600_000, "cache_write_1h_tokens": 200_000}
    report = Report(route="sonnet")
    assert report.bill(sonnet, usage)
    expected = (100_000 * price_in + 400_000 * 1.25 * price_in + 200_000 * 2.0 * price_in
                + 300_000 * price_cached) / 1_000_000
    assert report.cost_usd == pytest.approx(expected)
