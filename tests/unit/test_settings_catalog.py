"""The embedded default: the catalog's current offers join the fleet when their key is set."""

from __future__ import annotations

from polyroute import config as cfg
from polyroute.catalog import load_catalog
from polyroute.embedded import LOCAL_MODEL
from polyroute.settings import default_raw, effective_config

ENV = {"DEEPSEEK_API_KEY": "sk-ds", "MOONSHOT_API_KEY": "sk-moon", "FIREWORKS_API_KEY": ""}


def test_keys_bring_in_the_current_ids_with_their_continuation() -> None:
    raw = default_raw(load_catalog(), ENV)
    models, backends = raw["models"], raw["backends"]
    assert models["deepseek-v4-flash"]["upstream"] == "deepseek-flash"
    assert models["deepseek-v4-pro"]["upstream"] == "deepseek-v4-pro"
    assert models["kimi-k2-6"]["upstream"] == "kimi-k2.6"
    assert backends["deepseek"]["continuation"] == "prefix"
    assert backends["deepseek"]["continuation_base_url"] == "https://api.deepseek.com/beta"
    assert backends["moonshot"]["continuation"] == "partial"
    assert backends["moonshot"]["provider"] == "moonshot"
    # An empty variable is no key: Fireworks (which also serves V4 Pro) stays out.
    assert "fireworks" not in backends
    assert raw["routes"]["default"]["models"][-1] == LOCAL_MODEL


def test_the_cheapest_offer_with_a_key_is_chosen() -> None:
    raw = default_raw(load_catalog(), {"DEEPSEEK_API_KEY": "sk-ds", "FIREWORKS_API_KEY": "fw"})
    # By the mean of list prices, Fireworks' V4 Pro (1.74/3.48) edges out DeepSeek's own
    # peak rate (1.32/3.96); Flash is only offered by DeepSeek.
    assert raw["models"]["deepseek-v4-pro"]["backend"] == "fireworks"
    assert raw["models"]["deepseek-v4-pro"]["input_per_mtok"] == 1.74
    assert raw["models"]["deepseek-v4-flash"]["backend"] == "deepseek"
    raw = default_raw(load_catalog(), {"DEEPSEEK_API_KEY": "sk-ds"})
    assert raw["models"]["deepseek-v4-pro"]["backend"] == "deepseek"


def test_the_embedded_default_with_keys_is_a_valid_config() -> None:
    config = effective_config(None, env=ENV)
    assert config.source == cfg.EMBEDDED_SOURCE
    assert {"deepseek-v4-flash", "deepseek-v4-pro", "kimi-k2-6", LOCAL_MODEL} <= set(config.models)
    assert config.backends["deepseek"].provider == "deepseek"


def test_the_default_route_tries_the_cheapest_hosted_model_first_and_the_local_one_last() -> None:
    """A key for a flagship in the environment (OPENAI_API_KEY is common) must not send every request there."""
    raw = default_raw(load_catalog(), {"OPENAI_API_KEY": "sk-oa", "DEEPSEEK_API_KEY": "sk-ds"})
    order = raw["routes"]["default"]["models"]
    prices = [raw["models"][m]["input_per_mtok"] + raw["models"][m]["output_per_mtok"] for m in order[:-1]]
    assert prices == sorted(prices) and order[0] == "deepseek-v4-flash" and order[-1] == LOCAL_MODEL
    assert order.index("gpt-5-5") == len(order) - 2  # the dearest hosted model is the last before the local one
