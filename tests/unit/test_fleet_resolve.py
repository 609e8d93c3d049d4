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
