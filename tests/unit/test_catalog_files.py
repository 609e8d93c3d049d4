"""A user's own catalog files (``[catalog] files``): added and overridden families and offers."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polyroute import config as cfg
from polyroute.catalog import Catalog, catalog_files, load_catalog, load_catalog_for, load_with_files
from polyroute.cli import main
from polyroute.errors import ConfigError
from polyroute.fleet import Fleet

NEW_FAMILY = """
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
price_date = 2026-12-01
"""

# Our negotiated DeepSeek rate, a note, and a second host for V4 Pro.
OVERRIDE = """
[families.deepseek-v4-flash]
note = "Our contract price."

[[families.deepseek-v4-flash.offers]]
provider = "deepseek"
model = "deepseek-flash"
input_per_mtok = 0.25
output_per_mtok = 1.00
off_peak_input_per_mtok = 0.125
off_peak_output_per_mtok = 0.50
price_source = "https://intranet.example.com/contracts/deepseek"
price_date = 2026-12-05

[[families.deepseek-v4-pro.offers]]
provider = "together"
wire = "openai"
base_url = "https://api.together.xyz/v1"
model = "deepseek-ai/DeepSeek-V4-Pro"
key_env = "TOGETHER_API_KEY"
input_per_mtok = 2.10
output_per_mtok = 4.40
price_source = "https://www.together.ai/pricing"
price_date = 2026-12-05
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return load_catalog()


def test_a_new_family_is_added_after_the_shipped_ones(tmp_path: Path, shipped: Catalog) -> None:
    catalog = load_with_files([_write(tmp_path, "ours.toml", NEW_FAMILY)])
    assert list(catalog.families)[:-1] == list(shipped.families)
    family = catalog.families["acme-one"]
    assert family.id == "acme-one" and family.offers[0].price_date == dt.date(2026, 12, 1)
    assert catalog.source.endswith(" + " + str(tmp_path / "ours.toml"))


def test_an_override_replaces_the_fields_given_and_keeps_the_rest(tmp_path: Path, shipped: Catalog) -> None:
    catalog = load_with_files([_write(tmp_path, "ours.toml", OVERRIDE)])
    before, after = shipped.families["deepseek-v4-flash"], catalog.families["deepseek-v4-flash"]
    assert after.note == "Our contract price."
    assert (after.name, after.licence, after.context_window) == (before.name, before.licence, before.context_window)
    assert len(after.offers) == len(before.offers)
    offer = after.offers[0]
    assert (offer.provider, offer.model) == ("deepseek", "deepseek-flash")
    assert (offer.input_per_mtok, offer.output_per_mtok) == (0.25, 1.00)
    assert offer.price_at(dt.datetime(2026, 12, 12, tzinfo=dt.UTC)) == (0.125, 0.50)  # a Saturday
    # Fields the override leaves out stay as shipped.
    old = before.offers[0]
    assert (offer.base_url, offer.key_env, offer.continuation, offer.peak_hours_utc) == (
        old.base_url, old.key_env, old.continuation, old.peak_hours_utc
    )
    assert offer.cached_input_per_mtok == old.cached_input_per_mtok


def test_an_offer_not_matched_by_provider_and_model_is_added(tmp_path: Path, shipped: Catalog) -> None:
    catalog = load_with_files([_write(tmp_path, "ours.toml", OVERRIDE)])
    pro = catalog.families["deepseek-v4-pro"]
    assert [(o.provider, o.model) for o in pro.offers] == [
        *((o.provider, o.model) for o in shipped.families["deepseek-v4-pro"].offers),
        ("together", "deepseek-ai/DeepSeek-V4-Pro"),
    ]


def test_files_apply_in_order(tmp_path: Path) -> None:
    first = _write(tmp_path, "a.toml", NEW_FAMILY)
    second = _write(tmp_path, "b.toml", '[families.acme-one]\nname = "Acme One, renamed"\n')
    catalog = load_with_files([first, second])
    assert catalog.families["acme-one"].name == "Acme One, renamed"
    with pytest.raises(ConfigError) as info:
        load_with_files([second, first])  # the rename comes before the family exists
    assert info.value.source == str(second)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (
            '[[families.deepseek-v4-flash.offers]]\nprovider = "deepseek"\nmodel = "deepseek-flash"\n'
            "input_per_mtok = -1\n",
            "families.deepseek-v4-flash.offers.0.input_per_mtok",
            "greater than or equal to 0",
        ),
        (
            '[[families.deepseek-v4-flash.offers]]\nprovider = "deepseek"\nmodel = "deepseek-flash"\n'
            'price_date = "last week"\n',
            "families.deepseek-v4-flash.offers.0.price_date",
            "date",
        ),
        (
            '[[families.deepseek-v4-flash.offers]]\nprovider = "deepseek"\nmodel = "deepseek-flash"\n'
            "colour = 1\n",
            "families.deepseek-v4-flash.offers.0.colour",
            "unknown key",
        ),
        (
            '[[families.deepseek-v4-flash.offers]]\ninput_per_mtok = 0.1\n',
            "families.deepseek-v4-flash.offers.0",
            "names its provider and model",
        ),
        (
            '[[families.deepseek-v4-flash.offers]]\nprovider = "elsewhere"\nmodel = "flash"\n',
            "families.deepseek-v4-flash.offers.0.wire",
            "required key is missing",
        ),
        ('[families.deepseek-v4-flash]\ncontext_window = "big"\n', "families.deepseek-v4-flash.context_window",
         "integer"),
        ('[families.new-one]\nname = "New"\n', "families.new-one.organisation", "required key is missing"),
        ('version = 2\n', "version", "unknown key"),
        ('source = "x"\n', "source", "unknown key"),
        ("families = 3\n", "families", "must be a table"),
    ],
)
def test_problems_name_the_users_file_and_key(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = _write(tmp_path, "ours.toml", text)
    with pytest.raises(ConfigError) as info:
        load_with_files([path])
    err = info.value
    assert err.source == str(path)
    assert any(p.startswith(f"{key}: ") and reason in p for p in err.problems), err.problems
    assert str(path) in err.message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        '[[families.deepseek-v4-flash.offers]]\nprovider = "deepseek"\nmodel = "deepseek-flash"\n'
        "input_per_mtok = -1\n\n"
        '[[families.kimi-k2-6.offers]]\nprovider = "moonshot"\nmodel = "kimi-k2.6"\nkey_env = "lower"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_with_files([_write(tmp_path, "ours.toml", text)])
    keys = [p.partition(": ")[0] for p in info.value.problems]
    assert keys == ["families.deepseek-v4-flash.offers.0.input_per_mtok", "families.kimi-k2-6.offers.0.key_env"]


def test_an_override_that_duplicates_another_familys_offer_is_refused(tmp_path: Path) -> None:
    text = ('[[families.deepseek-v4-pro.offers]]\nprovider = "deepseek"\nmodel = "deepseek-flash"\n'
            'wire = "openai"\nbase_url = "https://api.deepseek.com/v1"\nkey_env = "DEEPSEEK_API_KEY"\n'
            "input_per_mtok = 1\noutput_per_mtok = 1\nprice_source = \"https://x.test\"\nprice_date = 2026-12-01\n")
    with pytest.raises(ConfigError) as info:
        load_with_files([_write(tmp_path, "ours.toml", text)])
    assert "already offered at families.deepseek-v4-flash.offers.0" in info.value.message


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_with_files([missing])
    assert info.value.source == str(missing) and "cannot read catalog file" in info.value.message
    broken = _write(tmp_path, "broken.toml", "[families.x\n")
    with pytest.raises(ConfigError) as info:
        load_with_files([broken])
    assert info.value.source == str(broken) and "invalid TOML" in info.value.message


# --- [catalog] in the config ------------------------------------------------------------------


def _config(tmp_path: Path, files: str, models: str = "") -> Path:
    # A fake backend marked remote, so that catalog prices apply to it.
    return _write(tmp_path, "gw.toml",
                  f"[catalog]\nfiles = {files}\n\n[backends.f]\ntype = \"fake\"\nlocality = \"remote\"\n{models}")


def test_paths_are_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cat").mkdir()
    _write(tmp_path / "cat", "ours.toml", NEW_FAMILY)
    absolute = _write(tmp_path, "abs.toml", '[families.acme-one]\nname = "From an absolute path"\n')
    config = cfg.load(_config(tmp_path, f'["cat/ours.toml", "{absolute}"]'), env={})
    monkeypatch.chdir("/")  # the working directory plays no part
    assert catalog_files(config) == [tmp_path / "cat" / "ours.toml", absolute]
    assert load_catalog_for(config).families["acme-one"].name == "From an absolute path"


def test_no_catalog_section_is_the_shipped_catalog(tmp_path: Path, shipped: Catalog) -> None:
    config = cfg.load(_write(tmp_path, "gw.toml", '[backends.f]\ntype = "fake"\n'), env={})
    assert config.catalog.files == []
    assert load_catalog_for(config) == shipped


@pytest.mark.parametrize(
    ("section", "key", "reason"),
    [('files = [""]', "catalog.files", "empty"), ('file = ["x.toml"]', "catalog.file", "unknown key"),
     ('files = "x.toml"', "catalog.files", "list")],
)
def test_the_catalog_section_is_validated(tmp_path: Path, section: str, key: str, reason: str) -> None:
    path = _write(tmp_path, "gw.toml", f"[catalog]\n{section}\n")
    with pytest.raises(ConfigError) as info:
        cfg.load(path, env={})
    assert any(p.startswith(f"{key}: ") and reason in p for p in info.value.problems), info.value.problems


def test_the_fleet_uses_the_users_prices_and_families(tmp_path: Path) -> None:
    _write(tmp_path, "ours.toml", NEW_FAMILY + OVERRIDE)
    models = ('[models.flash]\nbackend = "f"\nfamily = "deepseek-v4-flash"\n'
              '[models.acme]\nbackend = "f"\nfamily = "acme-one"\n')
    config = cfg.load(_config(tmp_path, '["ours.toml"]', models), env={})
    fleet = Fleet.build(config, load_catalog_for(config))
    flash = fleet.models["flash"]
    assert (flash.input_per_mtok, flash.output_per_mtok) == (0.25, 1.00)
    assert fleet.models["acme"].organisation == "Acme Labs"


def test_config_check_accepts_a_family_from_the_users_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, "ours.toml", NEW_FAMILY)
    path = _config(tmp_path, '["ours.toml"]', '[models.acme]\nbackend = "f"\nfamily = "acme-one"\n')
    assert main(["config", "check", str(path)]) == 0
    assert "ok:" in capsys.readouterr().out


def test_config_check_reports_a_bad_catalog_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path, "ours.toml", "[families.acme-one]\nname = 7\n")
    assert main(["config", "check", str(_config(tmp_path, '["ours.toml"]'))]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: " in err and "families.acme-one" in err


def test_serve_refuses_a_bad_catalog_file_before_listening(tmp_path: Path) -> None:
    bad = _write(tmp_path, "ours.toml", "[families.acme-one]\nname = 7\n")
    config = _config(tmp_path, '["ours.toml"]')
    # In a child process: serve sets up logging for the whole process.
    done = subprocess.run(
        [sys.executable, "-m", "polyroute", "serve", "--config", str(config), "--port", "1"],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )
    assert done.returncode == 2
    assert f"{bad}: " in done.stderr and "families.acme-one" in done.stderr
    assert "serving on" not in done.stderr and "Traceback" not in done.stderr


def test_a_negotiated_rate_below_the_shipped_off_peak_rates_drops_them(tmp_path: Path, shipped: Catalog) -> None:
    """The shipped off-peak rates are a discount on the shipped list price; a lower rate of your own replaces them."""
    shipped_offer = next(o for o in shipped.get("deepseek-v4-flash").offers if o.provider == "deepseek")
    assert shipped_offer.off_peak_input_per_mtok is not None
    low = shipped_offer.off_peak_input_per_mtok / 2
    path = _write(tmp_path, "low.toml", f"""
[[families.deepseek-v4-flash.offers]]
provider = "deepseek"
model = "{shipped_offer.model}"
input_per_mtok = {low}
output_per_mtok = {low}
""")
    offer = next(o for o in load_with_files([path]).get("deepseek-v4-flash").offers if o.provider == "deepseek")
    assert (offer.input_per_mtok, offer.output_per_mtok) == (low, low)
    assert offer.off_peak_input_per_mtok is None and offer.peak_hours_utc is None
    # A rate still above them keeps the provider's time-of-day pricing.
    path = _write(tmp_path, "high.toml", f"""
[[families.deepseek-v4-flash.offers]]
provider = "deepseek"
model = "{shipped_offer.model}"
input_per_mtok = {shipped_offer.input_per_mtok * 0.9}
""")
    kept = next(o for o in load_with_files([path]).get("deepseek-v4-flash").offers if o.provider == "deepseek")
    assert kept.off_peak_input_per_mtok == shipped_offer.off_peak_input_per_mtok


def test_offers_for_a_mistyped_family_are_one_problem_naming_the_family_meant(tmp_path: Path) -> None:
    text = ('[[families.deepsek-v4-flash.offers]]\nprovider = "deepseek"\nmodel = "deepseek-flash"\n'
            "input_per_mtok = 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_with_files([_write(tmp_path, "ours.toml", text)])
    assert info.value.problems == [
        "families.deepsek-v4-flash: not a family of the catalog (did you mean 'deepseek-v4-flash'?); a new family "
        "also needs name, organisation, country, licence, open_weights, context_window"]
