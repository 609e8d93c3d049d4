"""The model catalog: the shipped data file, the typed loader and the filters."""

from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from polyroute.catalog import Catalog, Family, load_catalog, parse_catalog
from polyroute.errors import ConfigError

REQUIRED_FAMILIES = {
    "deepseek-v4-flash",
    "deepseek-v4-pro",
    "qwen3-235b",
    "qwen3-coder",
    "qwen3-8b",
    "qwen3-6-plus",
    "kimi-k2-6",
    "glm-5-2",
    "glm-4-6",
    "llama-3-3-70b",
    "llama-4-maverick",
    "ernie-4-5",
    "gpt-5-5",
    "gpt-5-4-mini",
    "gpt-4-1",
    "gpt-4-1-mini",
    "claude-fable-5-2",
    "claude-sonnet-5-5",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "gemini-3-5-flash",
    "mistral-medium-3-5",
    "smollm2-135m",
}
# Every maker the catalog must cover, by a word of its organisation's name.
SEED_MAKERS = ("DeepSeek", "Qwen", "Moonshot", "Zhipu", "Meta", "Baidu", "OpenAI", "Anthropic", "Mistral", "Google")
# Ids the providers have retired: an offer calling one would fail on every request.
RETIRED_IDS = {
    "deepseek-chat",  # DeepSeek, 2026-07-24
    "deepseek-reasoner",  # DeepSeek, 2026-07-24
    "kimi-k2-0711-preview",  # Moonshot, 2026-05-25, and the rest of the K2 preview ids
    "kimi-k2-0905-preview",
    "kimi-k2-turbo-preview",
    "kimi-k2-thinking",
    "kimi-k2-thinking-turbo",
    "kimi-latest",
}


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return load_catalog()


def _offer(**over: Any) -> dict[str, Any]:
    offer: dict[str, Any] = {
        "provider": "acme",
        "wire": "openai",
        "base_url": "https://api.acme.test/v1",
        "model": "acme-1",
        "key_env": "ACME_API_KEY",
        "input_per_mtok": 1.0,
        "output_per_mtok": 3.0,
        "price_source": "https://acme.test/pricing",
        "price_date": dt.date(2026, 1, 1),
    }
    offer.update(over)
    return offer


def _family(**over: Any) -> dict[str, Any]:
    family: dict[str, Any] = {
        "name": "Acme One",
        "organisation": "Acme Labs",
        "country": "FR",
        "licence": "Apache-2.0",
        "open_weights": True,
        "context_window": 32768,
        "capabilities": ["tools"],
        "offers": [_offer()],
    }
    family.update(over)
    return family


def _catalog(**families: dict[str, Any]) -> Catalog:
    return parse_catalog({"families": families})


# --- the shipped file --------------------------------------------------------------------


def test_shipped_file_is_package_data() -> None:
    assert resources.files("polyroute.catalog").joinpath("families.toml").is_file()


def test_shipped_catalog_has_every_required_family(shipped: Catalog) -> None:
    assert set(shipped.families) >= REQUIRED_FAMILIES
    assert shipped.source == "polyroute/catalog/families.toml"


@pytest.mark.parametrize("family_id", sorted(REQUIRED_FAMILIES))
def test_shipped_family_is_complete(shipped: Catalog, family_id: str) -> None:
    family = shipped.get(family_id)
    assert family is not None
    assert family.id == family_id
    assert family.name and family.organisation and family.licence
    assert len(family.country) == 2 and family.country.isupper()
    assert family.context_window >= 4096
    for offer in family.offers:
        assert offer.base_url.startswith("https://")
        assert offer.price_source.startswith("https://")
        assert offer.key_env.endswith("_API_KEY")
        assert offer.input_per_mtok > 0 and offer.output_per_mtok > 0
        assert isinstance(offer.price_date, dt.date)


def test_only_the_in_process_model_is_local_and_free(shipped: Catalog) -> None:
    local = shipped.filter(local=True)
    assert [f.id for f in local] == ["smollm2-135m"]
    smol = local[0]
    assert smol.offers == [] and smol.cheapest_offer() is None
    assert smol.price() == (0.0, 0.0)
    assert smol.open_weights and smol.licence == "Apache-2.0"


def test_shipped_continuation_modes(shipped: Catalog) -> None:
    deepseek = next(o for o in shipped.families["deepseek-v4-flash"].offers if o.provider == "deepseek")
    assert deepseek.continuation == "prefix"
    assert deepseek.continuation_base_url == "https://api.deepseek.com/beta"
    moonshot = next(o for o in shipped.families["kimi-k2-6"].offers if o.provider == "moonshot")
    assert moonshot.continuation == "partial"  # Moonshot's flag is "partial": true, not "prefix"
    for family_id in ("claude-sonnet-5-5", "claude-sonnet-4-5", "claude-haiku-4-5"):
        (offer,) = shipped.families[family_id].offers
        assert (offer.wire, offer.continuation) == ("anthropic", "prefill")
        assert offer.base_url == "https://api.anthropic.com"
    together = next(o for o in shipped.families["llama-3-3-70b"].offers if o.provider == "together")
    assert together.continuation == "none"


def test_shipped_proprietary_families_are_closed(shipped: Catalog) -> None:
    closed = {f.id for f in shipped.filter(open_weights=False)}
    assert {"gpt-5-5", "gpt-4-1", "gpt-4-1-mini", "claude-sonnet-5-5", "claude-haiku-4-5"} <= closed
    assert all(shipped.families[i].licence == "proprietary" for i in closed)


def test_every_seed_maker_is_covered(shipped: Catalog) -> None:
    for maker in SEED_MAKERS:
        assert any(maker.casefold() in f.organisation.casefold() for f in shipped.families.values()), maker


def test_every_offer_is_dated_and_sourced(shipped: Catalog) -> None:
    offers = shipped.offers()
    assert len(offers) >= 25
    for family, offer in offers:
        where = f"{family.id} on {offer.provider}"
        assert isinstance(offer.price_date, dt.date), where
        # Read on or before the day this catalog was last updated, and after the seed was written.
        assert dt.date(2026, 1, 1) <= offer.price_date <= dt.date(2026, 12, 7), where
        source = urlsplit(offer.price_source)
        assert source.scheme == "https" and "." in (source.hostname or ""), where
        assert offer.base_url.startswith("https://"), where


# Where a provider publishes its own prices: a first-party offer's price_source must be one of these.
OWN_PRICE_PAGES = {
    "anthropic": ("platform.claude.com", "docs.anthropic.com"),
    "openai": ("developers.openai.com", "platform.openai.com", "openai.com"),
    "deepseek": ("api-docs.deepseek.com",),
    "moonshot": ("platform.moonshot.ai", "platform.moonshot.cn", "platform.kimi.ai"),
    "zhipu": ("docs.z.ai", "open.bigmodel.cn", "bigmodel.cn"),
    "dashscope": ("www.alibabacloud.com", "help.aliyun.com"),
    "gemini": ("ai.google.dev", "cloud.google.com"),
    "mistral": ("mistral.ai", "docs.mistral.ai"),
}


def test_first_party_offers_cite_the_providers_own_page(shipped: Catalog) -> None:
    for family, offer in shipped.offers():
        hosts = OWN_PRICE_PAGES.get(offer.provider)
        if hosts is not None:
            assert urlsplit(offer.price_source).hostname in hosts, f"{family.id} on {offer.provider}"


def test_claude_fable_5_2_is_priced_from_anthropics_page(shipped: Catalog) -> None:
    fable = shipped.families["claude-fable-5-2"]
    assert not fable.open_weights and fable.context_window == 1_000_000
    (offer,) = fable.offers
    assert (offer.model, offer.wire, offer.base_url) == ("claude-fable-5-2", "anthropic", "https://api.anthropic.com")
    assert (offer.input_per_mtok, offer.output_per_mtok) == (8.0, 40.0)
    # No Anthropic page seen gives its cache-read rate, so none is shipped: cached tokens cost the input rate.
    assert offer.cached_input_per_mtok is None
    assert offer.price_date == dt.date(2026, 12, 7)


def test_no_offer_is_listed_twice(shipped: Catalog) -> None:
    pairs = [(o.provider, o.model) for _, o in shipped.offers()]
    assert len(pairs) == len(set(pairs))


def test_no_offer_calls_a_retired_id(shipped: Catalog) -> None:
    called = {o.model for _, o in shipped.offers()}
    assert not called & RETIRED_IDS


def test_open_weight_families_name_their_licence(shipped: Catalog) -> None:
    for family in shipped.filter(open_weights=True):
        assert family.licence.strip() and family.licence != "proprietary", family.id


def test_open_weight_ernie_never_routes_to_a_closed_baidu_model(shipped: Catalog) -> None:
    ernie = shipped.families["ernie-4-5"]
    assert ernie.open_weights and ernie.offers
    for offer in ernie.offers:
        model = offer.model.lower()
        # The open ERNIE 4.5 checkpoints are the MoE releases (300B-A47B, 21B-A3B, ...);
        # Turbo, X1 and 5.x are Baidu's closed hosted models.
        assert "ernie-4.5-" in model and ("a47b" in model or "a3b" in model), offer.model
        assert not any(word in model for word in ("turbo", "x1", "ernie-5")), offer.model


def test_deepseek_bills_half_price_off_peak(shipped: Catalog) -> None:
    flash = next(o for o in shipped.families["deepseek-v4-flash"].offers if o.provider == "deepseek")
    assert flash.model == "deepseek-flash"
    assert flash.off_peak_input_per_mtok == flash.input_per_mtok / 2
    assert flash.off_peak_output_per_mtok == flash.output_per_mtok / 2
    assert flash.cached_input_per_mtok is not None and flash.cached_input_per_mtok < flash.input_per_mtok
    monday = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    assert flash.price_at(monday.replace(hour=2)) == (flash.input_per_mtok, flash.output_per_mtok)
    assert flash.price_at(monday.replace(hour=4)) == (0.15, 0.60)  # the gap between the two peaks
    assert flash.price_at(monday.replace(hour=9, minute=59)) == (0.30, 1.20)
    assert flash.price_at(monday.replace(hour=10)) == (0.15, 0.60)
    saturday = dt.datetime(2026, 12, 12, 2, tzinfo=dt.UTC)
    assert not flash.is_peak(saturday) and flash.price_at(saturday) == (0.15, 0.60)
    # An aware time in another zone: 10:30 in Beijing is 02:30 UTC, peak.
    beijing = dt.datetime(2026, 12, 7, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert flash.is_peak(beijing)
    # Ranking uses the list (peak) price, so a route never looks cheaper than it can be.
    assert flash.mean_price() == (0.30 + 1.20) / 2


def test_an_offer_without_peak_hours_has_one_price() -> None:
    offer = _catalog(x=_family()).families["x"].offers[0]
    assert not offer.is_peak(dt.datetime(2026, 12, 7, 2, tzinfo=dt.UTC))
    assert offer.price_at(dt.datetime(2026, 12, 7, 2, tzinfo=dt.UTC)) == (1.0, 3.0)


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"off_peak_input_per_mtok": 0.5, "off_peak_output_per_mtok": 1.0}, "go together"),
        ({"peak_hours_utc": ["01:00-04:00"]}, "go together"),
        ({"off_peak_input_per_mtok": 0.5, "peak_hours_utc": ["01:00-04:00"]}, "both"),
        ({"off_peak_input_per_mtok": 2.0, "off_peak_output_per_mtok": 1.0, "peak_hours_utc": ["01:00-04:00"]},
         "higher than the list"),
        ({"off_peak_input_per_mtok": 0.5, "off_peak_output_per_mtok": 1.0, "peak_hours_utc": ["9-12"]}, "HH:MM"),
        ({"off_peak_input_per_mtok": 0.5, "off_peak_output_per_mtok": 1.0, "peak_hours_utc": ["12:00-09:00"]},
         "start before end"),
        ({"cached_input_per_mtok": -0.1}, "greater than or equal to 0"),
    ],
)
def test_bad_off_peak_and_cache_prices_are_refused(over: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        _catalog(x=_family(offers=[_offer(**over)]))
    assert reason in info.value.message
    assert "families.x.offers.0" in info.value.message


def test_the_same_offer_in_two_families_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        _catalog(x=_family(), y=_family())
    assert info.value.key == "families.y.offers.0"
    assert "already offered at families.x.offers.0" in info.value.message


def test_stale_lists_offers_read_more_than_n_days_ago_oldest_first() -> None:
    catalog = _catalog(
        x=_family(offers=[
            _offer(price_date=dt.date(2026, 9, 1)),
            _offer(model="acme-2", price_date=dt.date(2026, 6, 1)),
        ]),
        y=_family(offers=[_offer(model="acme-3", price_date=dt.date(2026, 12, 1))]),
    )
    today = dt.date(2026, 12, 6)
    assert [o.model for _, o in catalog.stale(90, today)] == ["acme-2", "acme-1"]
    assert [o.model for _, o in catalog.stale(96, today)] == ["acme-2"]  # exactly 96 days is not over 96
    assert catalog.stale(200, today) == []


def test_loading_is_uncached() -> None:
    first = load_catalog()
    second = load_catalog()
    # Each caller holds its own Catalog: nothing is kept at module level.
    assert first is not second and first == second


# --- prices and keys ----------------------------------------------------------------------


def test_cheapest_offer_ranks_by_mean_of_input_and_output() -> None:
    family = _catalog(
        x=_family(
            offers=[
                _offer(provider="a", input_per_mtok=0.1, output_per_mtok=4.0),  # mean 2.05
                _offer(provider="b", input_per_mtok=1.0, output_per_mtok=2.0),  # mean 1.5
                _offer(provider="c", input_per_mtok=2.0, output_per_mtok=1.0),  # mean 1.5, later
            ]
        )
    ).families["x"]
    cheapest = family.cheapest_offer()
    assert cheapest is not None and cheapest.provider == "b"
    assert family.price() == (1.0, 2.0)
    assert family.mean_price() == 1.5


def test_local_family_with_an_offer_still_costs_nothing() -> None:
    family = _catalog(x=_family(local=True)).families["x"]
    assert family.cheapest_offer() is not None
    assert family.price() == (0.0, 0.0)


def test_offers_with_keys_needs_a_non_empty_variable() -> None:
    family = _catalog(
        x=_family(offers=[_offer(provider="a", key_env="A_API_KEY"), _offer(provider="b", key_env="B_API_KEY")])
    ).families["x"]
    assert family.offers_with_keys({}) == []
    assert [o.provider for o in family.offers_with_keys({"A_API_KEY": "", "B_API_KEY": "sk-1"})] == ["b"]


# --- filters ------------------------------------------------------------------------------


@pytest.fixture
def small() -> Catalog:
    return _catalog(
        **{
            "open-cheap": _family(
                organisation="Mistral AI", country="FR", offers=[_offer(input_per_mtok=0.2, output_per_mtok=0.6)]
            ),
            "closed-dear": _family(
                organisation="OpenAI",
                country="US",
                licence="proprietary",
                open_weights=False,
                offers=[_offer(model="acme-2", input_per_mtok=2.0, output_per_mtok=8.0)],
            ),
            "cn-model": _family(
                organisation="DeepSeek",
                country="CN",
                offers=[_offer(model="acme-3", input_per_mtok=0.3, output_per_mtok=0.4)],
            ),
            "on-box": _family(organisation="Hugging Face", country="US", local=True, offers=[]),
        }
    )


def _ids(families: list[Family]) -> list[str]:
    return [f.id for f in families]


def test_no_filter_keeps_file_order(small: Catalog) -> None:
    assert _ids(small.filter()) == ["open-cheap", "closed-dear", "cn-model", "on-box"]


def test_filter_open_weights(small: Catalog) -> None:
    assert _ids(small.filter(open_weights=True)) == ["open-cheap", "cn-model", "on-box"]
    assert _ids(small.filter(open_weights=False)) == ["closed-dear"]


def test_filter_origin_by_country_or_organisation(small: Catalog) -> None:
    assert _ids(small.filter(origin="us")) == ["closed-dear", "on-box"]
    assert _ids(small.filter(origin="deepseek")) == ["cn-model"]
    assert _ids(small.filter(origin="MISTRAL")) == ["open-cheap"]
    # Two letters are a country code, not a fragment of "Mistral AI".
    assert _ids(small.filter(origin="ai")) == []


def test_filter_max_price_is_inclusive_and_local_is_free(small: Catalog) -> None:
    assert _ids(small.filter(max_price=0.4)) == ["open-cheap", "cn-model", "on-box"]
    assert _ids(small.filter(max_price=0.39)) == ["cn-model", "on-box"]
    assert _ids(small.filter(max_price=0)) == ["on-box"]


def test_filter_local_and_combinations(small: Catalog) -> None:
    assert _ids(small.filter(local=True)) == ["on-box"]
    assert _ids(small.filter(local=False, origin="US")) == ["closed-dear"]
    assert _ids(small.filter(open_weights=True, max_price=0.4, local=False)) == ["open-cheap", "cn-model"]


def test_shipped_filters_agree_with_the_data(shipped: Catalog) -> None:
    chinese = shipped.filter(origin="CN")
    assert {"deepseek-v4-flash", "qwen3-235b", "kimi-k2-6", "glm-4-6", "ernie-4-5"} <= set(_ids(chinese))
    assert all(f.country == "CN" for f in chinese)
    assert {f.id for f in shipped.filter(origin="alibaba")} >= {"qwen3-235b", "qwen3-coder", "qwen3-8b"}
    assert all(f.mean_price() <= 1.0 for f in shipped.filter(max_price=1.0))
    assert "claude-sonnet-4-5" not in _ids(shipped.filter(max_price=1.0))


# --- bad catalog files --------------------------------------------------------------------

_GOOD_TOML = """
[families.acme-one]
name = "Acme One"
organisation = "Acme Labs"
country = "FR"
licence = "Apache-2.0"
open_weights = true
context_window = 32768
capabilities = ["tools"]

[[families.acme-one.offers]]
provider = "acme"
wire = "openai"
base_url = "https://api.acme.test/v1"
model = "acme-1"
key_env = "ACME_API_KEY"
input_per_mtok = 1.0
output_per_mtok = 3.0
price_source = "https://acme.test/pricing"
price_date = 2026-01-01
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_file_loads_from_a_path(tmp_path: Path) -> None:
    catalog = load_catalog(_write(tmp_path, _GOOD_TOML))
    family = catalog.get("acme-one")
    assert family is not None and family.offers[0].price_date == dt.date(2026, 1, 1)
    assert catalog.get("missing") is None


@pytest.mark.parametrize(
    ("old", "new", "key", "reason"),
    [
        ('model = "acme-1"', 'model = "acme-1"\ncolour = "red"', "families.acme-one.offers.0.colour", "unknown key"),
        ("context_window = 32768", 'context_window = "big"', "families.acme-one.context_window", "integer"),
        ("open_weights = true", 'open_weights = "perhaps"', "families.acme-one.open_weights", "boolean"),
        ('country = "FR"', 'country = "France"', "families.acme-one.country", "ISO-3166"),
        ('capabilities = ["tools"]', 'capabilities = ["telepathy"]', "families.acme-one.capabilities.0", "tools"),
        ('wire = "openai"', 'wire = "grpc"', "families.acme-one.offers.0.wire", "openai"),
        ("input_per_mtok = 1.0", "input_per_mtok = -1.0", "families.acme-one.offers.0.input_per_mtok", "0"),
        ('key_env = "ACME_API_KEY"', 'key_env = "sk-live-123"', "families.acme-one.offers.0.key_env", "environment"),
        (
            'base_url = "https://api.acme.test/v1"',
            'base_url = "api.acme.test"',
            "families.acme-one.offers.0.base_url",
            "URL",
        ),
    ],
)
def test_bad_values_name_file_key_and_reason(tmp_path: Path, old: str, new: str, key: str, reason: str) -> None:
    assert old in _GOOD_TOML
    path = _write(tmp_path, _GOOD_TOML.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_catalog(path)
    err = info.value
    assert err.source == str(path)
    assert err.key == key
    assert reason in err.message
    assert str(path) in err.message and key in err.message


@pytest.mark.parametrize("key", ["version", "source"])
def test_unknown_top_level_key(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_catalog(_write(tmp_path, f'{key} = "x"\n' + _GOOD_TOML))
    assert info.value.key == key
    assert "unknown key" in info.value.message


def test_hosted_family_without_offers_is_refused(tmp_path: Path) -> None:
    text = _GOOD_TOML.split("[[families.acme-one.offers]]")[0]
    with pytest.raises(ConfigError) as info:
        load_catalog(_write(tmp_path, text))
    assert info.value.key == "families.acme-one"
    assert "at least one offer" in info.value.message


def test_id_must_match_the_table_key(tmp_path: Path) -> None:
    text = _GOOD_TOML.replace('name = "Acme One"', 'id = "acme-two"\nname = "Acme One"')
    with pytest.raises(ConfigError) as info:
        load_catalog(_write(tmp_path, text))
    assert "differs from the table key" in info.value.message


def test_id_must_be_kebab_case(tmp_path: Path) -> None:
    text = _GOOD_TOML.replace("families.acme-one", "families.Acme_One")
    with pytest.raises(ConfigError) as info:
        load_catalog(_write(tmp_path, text))
    assert info.value.key == "families.Acme_One.id"
    assert "kebab-case" in info.value.message


def test_proprietary_with_open_weights_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        _catalog(x=_family(licence="proprietary", open_weights=True))
    assert "proprietary" in info.value.message


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_catalog(_write(tmp_path, "[families.acme-one\n"))
    assert "invalid TOML" in info.value.message and info.value.source is not None
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_catalog(missing)
    assert info.value.source == str(missing)
    assert "cannot read" in info.value.message


def test_a_misspelt_key_is_reported_as_unknown_first(tmp_path: Path) -> None:
    text = _GOOD_TOML.replace("context_window = 32768", "contxt_window = 32768")
    with pytest.raises(ConfigError) as info:
        load_catalog(_write(tmp_path, text))
    assert info.value.problems == [
        "families.acme-one.contxt_window: unknown key (did you mean 'context_window'?)",
        "families.acme-one.context_window: required key is missing",
    ]
