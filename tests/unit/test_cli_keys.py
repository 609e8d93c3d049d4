"""``polyroute keys`` and ``polyroute teams`` against a store file."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from polyroute.cli import main


def test_keys_and_teams_in_a_store_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{tmp_path / 'k.db'}"
    assert main(["teams", "create", "ops", "--store", store, "--budget-usd", "50", "--budget-period", "week",
                 "--rpm", "100"]) == 0
    assert main(["keys", "create", "ci", "--store", store, "--team", "ops", "--tpm", "1000",
                 "--expires-at", "2099-01-01T00:00:00+00:00", "--routes", "a,b"]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["keys", "list", "--store", store, "--format", "json"]) == 0
    [key] = json.loads(capsys.readouterr().out)
    assert (key["name"], key["team"], key["tpm"], key["routes"], key["revoked"]) == ("ci", "ops", 1000, ["a", "b"],
                                                                                    False)
    assert key["expires_at"].startswith("2099-01-01")
    assert main(["keys", "rotate", "ci", "--store", store]) == 0
    rotated = capsys.readouterr().out.strip().splitlines()[-1]
    assert rotated != secret and rotated.startswith("pr-")
    assert main(["keys", "revoke", "ci", "--store", store]) == 0
    assert capsys.readouterr().out.strip() == "key ci revoked"
    assert main(["keys", "rotate", "ci", "--store", store]) == 2  # would undo the revocation
    assert "pass --reactivate to reissue it" in capsys.readouterr().err
    assert main(["keys", "list", "--store", store]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:4] == ["name", "source", "team", "budget_usd"] and "True" in table
    assert secret not in table and rotated not in table
    assert main(["teams", "list", "--store", store]) == 0
    assert "ops" in capsys.readouterr().out
    assert main(["keys", "create", "member", "--store", store, "--team", "ops"]) == 0
    capsys.readouterr()
    assert main(["teams", "delete", "ops", "--store", store]) == 2  # a key still names it
    assert "still holds keys member" in capsys.readouterr().err
    assert main(["teams", "delete", "ops", "--store", store, "--force"]) == 0
    assert "keys left without its limits: member" in capsys.readouterr().out
    assert main(["teams", "delete", "ops", "--store", store]) == 2
    assert main(["keys", "create", "ci", "--store", store]) == 2  # the name is taken
    assert main(["keys", "create", "x", "--store", store, "--rpm", "0"]) == 2
    assert main(["keys", "create", "y", "--store", store, "--expires-at", "2099-01-01T00:00:00"]) == 2
    # The same bounds and name rule as the admin API's.
    assert main(["keys", "create", "z", "--store", store, "--expires-at", "9999-12-31T23:59:59-12:00"]) == 2
    assert main(["keys", "create", "z", "--store", store, "--rpm", str(2**63)]) == 2
    assert main(["keys", "create", "..", "--store", store]) == 2
    assert main(["teams", "create", "t", "--store", store, "--budget-usd", "1e300"]) == 2
    errors = capsys.readouterr().err
    assert "--expires-at" in errors and "--rpm" in errors and "name is required" in errors and "--budget-usd" in errors
    with sqlite3.connect(tmp_path / "k.db") as db:
        assert [r[0] for r in db.execute("SELECT name FROM keys")] == ["ci", "member"]


def test_reading_a_store_that_is_not_there_says_so_and_makes_no_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped path is not a new, empty store whose report reads as 'nothing spent'."""
    missing = tmp_path / "typo.db"
    for argv in (["usage"], ["keys", "list"], ["keys", "revoke", "k"], ["teams", "list"]):
        assert main([*argv, "--store", f"sqlite:///{missing}"]) == 2
        assert f"no store at {missing}" in capsys.readouterr().err
    assert not missing.exists()
    # Making a key is what creates a store.
    assert main(["keys", "create", "k", "--store", f"sqlite:///{missing}"]) == 0
    assert main(["usage", "--store", f"sqlite:///{missing}"]) == 0


def test_the_store_is_the_one_of_polyroute_config_and_each_command_says_which(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ``serve`` does, the key and usage commands take $POLYROUTE_CONFIG: a key made without flags
    lands in the store the running gateway reads, and stderr names it."""
    db = tmp_path / "gw.db"
    config = tmp_path / "gw.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{db}"\n')
    monkeypatch.setenv("POLYROUTE_CONFIG", str(config))
    assert main(["keys", "create", "app"]) == 0
    said = capsys.readouterr()
    assert said.out.strip().splitlines()[-1].startswith("pr-") and f"polyroute: store {db}" in said.err
    assert main(["usage", "--format", "json"]) == 0
    assert f"polyroute: store {db}" in capsys.readouterr().err
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM keys")] == ["app"]


def _config_with_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tables: str) -> Path:
    """A config file with a SQLite store, one fake model ``m``, ``tables``; its key ``ci``'s secret set."""
    conf = tmp_path / "gw.toml"
    conf.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "k.db"}"\n[backends.f]\ntype = "fake"\n'
                    f'[models.m]\nbackend = "f"\n{tables}')
    monkeypatch.setenv("CI_KEY", "sk-config-secret-0123456789")
    return conf


def test_a_listing_with_a_config_shows_its_keys_and_teams_beside_the_stores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf = _config_with_store(tmp_path, monkeypatch, '[teams.ops]\nrpm = 5\n[keys.ci]\nsecret = "env:CI_KEY"\n'
                              'team = "ops"\n')
    assert main(["keys", "create", "app", "--config", str(conf)]) == 0
    capsys.readouterr()
    assert main(["keys", "list", "--config", str(conf), "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert [(k["name"], k["source"]) for k in json.loads(out)] == [("ci", "config"), ("app", "store")]
    assert "sk-config-secret" not in out and "CI_KEY" not in out
    assert main(["teams", "list", "--config", str(conf)]) == 0
    assert re.search(r"^ops\s+config\s", capsys.readouterr().out, re.M)


def test_the_cli_refuses_what_the_admin_api_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf = _config_with_store(tmp_path, monkeypatch, '[teams.web]\nrpm = 5\n[policies.onprem]\nlocality = "local"\n'
                              '[keys.ci]\nsecret = "env:CI_KEY"\n[routes.main]\nmodels = ["m"]\n')
    for flags, said in ((["--team", "wbe"], "team 'wbe' is not defined (known: web)"),
                        (["--policy", "onprm"], "policy 'onprm' is not defined (known: onprem)"),
                        (["--routes", "mian"], "route 'mian' is not defined (known: main, m)")):
        assert main(["keys", "create", "p1", "--config", str(conf), *flags]) == 2
        assert said in capsys.readouterr().err
    assert main(["keys", "create", "ci", "--config", str(conf)]) == 2
    assert "key 'ci' is defined in the config file" in capsys.readouterr().err
    assert main(["keys", "create", "p1", "--config", str(conf), "--team", "web", "--policy", "onprem"]) == 0
    capsys.readouterr()
    assert main(["keys", "revoke", "ci", "--config", str(conf)]) == 2
    assert "key 'ci' is defined in the config file" in capsys.readouterr().err
