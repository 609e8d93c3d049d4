"""Virtual keys and teams through the admin API, kept in SQLite, used at once by the gateway."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.live import Live, live_gateway
from tests.support.wait import room_in_this_minute, wait_until

ADMIN = "admin-0123456789abcdef0123"
ENV = {"POLYROUTE_ADMIN_KEY": ADMIN, "STATIC_KEY": "sk-static-0123456789abcdef"}


def raw(db: Path) -> dict[str, object]:
    return {
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f", "input_per_mtok": 1.0, "output_per_mtok": 2.0},
                   "other": {"backend": "f", "upstream": "text-other"}},
        "admin": {"secret": "env:POLYROUTE_ADMIN_KEY"},
        "store": {"url": f"sqlite:///{db}", "flush_interval": 0.05},
        "keys": {"static": {"secret": "env:STATIC_KEY", "team": "ops"}},
        "teams": {"ops": {"budget_usd": 100.0}},
    }


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_gateway(raw(tmp_path / "store.db"), env=ENV) as g:
        yield g


def admin(live: Live, method: str, path: str, json: object = None, key: str = ADMIN) -> httpx.Response:
    return httpx.request(method, f"{live.root}/admin/{path}", json=json, timeout=10,
                         headers={"authorization": f"Bearer {key}"})


def chat(live: Live, secret: str, model: str = "echo") -> httpx.Response:
    return httpx.post(f"{live.base_url}/chat/completions", timeout=10, headers={"authorization": f"Bearer {secret}"},
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def test_the_admin_api_needs_the_admin_key(live: Live) -> None:
    assert httpx.get(f"{live.root}/admin/keys").status_code == 401
    wrong = admin(live, "GET", "keys", key=ENV["STATIC_KEY"])
    assert wrong.status_code == 403 and wrong.json()["error"]["type"] == "permission_error"


def test_a_key_is_made_with_its_secret_shown_once_and_works_at_once(live: Live, tmp_path: Path) -> None:
    unknown = admin(live, "POST", "keys", {"name": "app1", "team": "wbe"})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "team"
    assert "team 'wbe' is not defined (known: ops)" in unknown.json()["error"]["message"]
    assert admin(live, "POST", "teams", {"name": "web"}).status_code == 201
    made = admin(live, "POST", "keys", {"name": "app1", "team": "web", "budget_usd": 5, "budget_period": "week",
                                        "rpm": 100, "tpm": 50000, "expires_at": "2099-01-01T00:00:00Z"})
    assert made.status_code == 201
    doc = made.json()
    secret = doc["secret"]
    assert secret.startswith("pr-") and len(secret) > 40
    assert {k: doc[k] for k in ("name", "team", "budget_usd", "budget_period", "rpm", "tpm")} == {
        "name": "app1", "team": "web", "budget_usd": 5, "budget_period": "week", "rpm": 100, "tpm": 50000}
    client = openai.OpenAI(base_url=live.base_url, api_key=secret, max_retries=0)
    assert client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}]).choices
    listed = admin(live, "GET", "keys")
    assert [(k["name"], k["source"]) for k in listed.json()["data"]] == [("static", "config"), ("app1", "store")]
    assert secret not in listed.text and "secret" not in listed.json()["data"][0]
    assert "secret" not in admin(live, "GET", "keys/app1").json()
    # Only the SHA-256 is stored.
    with sqlite3.connect(tmp_path / "store.db") as db:
        (stored,) = db.execute("SELECT digest FROM keys WHERE name = 'app1'").fetchone()
    assert stored == hashlib.sha256(secret.encode()).digest()


def test_patch_revoke_and_rotate(live: Live) -> None:
    room_in_this_minute()
    secret = admin(live, "POST", "keys", {"name": "app2", "routes": ["echo"]}).json()["secret"]
    assert chat(live, secret, "other").status_code == 403
    patched = admin(live, "PATCH", "keys/app2", {"routes": None, "rpm": 1})
    assert patched.status_code == 200 and patched.json()["routes"] is None and patched.json()["rpm"] == 1
    assert chat(live, secret, "other").status_code == 200
    assert chat(live, secret).status_code == 429  # the new rpm counts
    rotated = admin(live, "POST", "keys/app2/rotate").json()["secret"]
    assert rotated != secret
    assert chat(live, secret).status_code == 401
    assert admin(live, "DELETE", "keys/app2").json()["revoked"] is True
    assert chat(live, rotated).status_code == 401
    # A rotation meant for a live key does not undo a revocation made meanwhile; a reissue says so in words.
    again = admin(live, "POST", "keys/app2/rotate")
    assert again.status_code == 409 and '{"reactivate": true}' in again.json()["error"]["message"]
    assert admin(live, "GET", "keys/app2").json()["revoked"] is True
    reissued = admin(live, "POST", "keys/app2/rotate", {"reactivate": True})
    assert reissued.status_code == 200 and reissued.json()["revoked"] is False
    # (Its rpm of 1 is spent this minute: a 429, not the 401 of a revoked key.)
    wait_until(lambda: chat(live, reissued.json()["secret"]).status_code != 401, what="the reissued key to work")


def test_bad_requests_are_refused_in_the_openai_shape(live: Live) -> None:
    for body, param in (({"team": "x"}, "name"), ({"name": "k", "budget_period": "year"}, "budget_period"),
                        ({"name": "k", "rpm": 0}, "rpm"), ({"name": "k", "colour": "red"}, "colour"),
                        ({"name": "k", "routes": ["nope"]}, "routes"), ({"name": "static"}, "name")):
        resp = admin(live, "POST", "keys", body)
        assert resp.status_code in (400, 409), body
        assert resp.json()["error"]["param"] == param, body
    typo = admin(live, "POST", "keys", {"name": "k", "rmp": 5})  # named as config check names it
    assert typo.json()["error"]["message"] == "Unknown parameter: 'rmp' (did you mean 'rpm'?)."
    assert admin(live, "POST", "keys", {"name": "dup"}).status_code == 201
    assert admin(live, "POST", "keys", {"name": "dup"}).status_code == 409
    assert admin(live, "GET", "keys/none").status_code == 404
    assert admin(live, "PUT", "keys").status_code == 405


def test_values_no_store_can_hold_are_refused_and_keys_keep_syncing(live: Live) -> None:
    """An instant past the last a date holds, or a number past a 64-bit integer, is a 400 naming the field.

    Once, such a key was saved, and every read of the keys failed after it: revocations
    stopped reaching the gateway, and the gateway could not start again."""
    victim = admin(live, "POST", "keys", {"name": "victim"}).json()["secret"]
    for body, param in (({"name": "k", "expires_at": "9999-12-31T23:59:59-12:00"}, "expires_at"),
                        ({"name": "k", "expires_at": "0001-01-01T00:00:00+01:00"}, "expires_at"),
                        ({"name": "k", "rpm": 2**63}, "rpm"), ({"name": "k", "tpm": 10**30}, "tpm"),
                        ({"name": "k", "budget_usd": 1e300}, "budget_usd"), ({"name": "k", "rpm": True}, "rpm"),
                        ({"name": ".."}, "name"), ({"name": ".hidden"}, "name"),
                        ({"name": "k", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
                        ({"name": "k", "team": "T" * 65}, "team"), ({"name": "k", "team": "a\u0000b\u202e"}, "team"),
                        ({"name": "k", "team": "-"}, "team")):
        resp = admin(live, "POST", "keys", body)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == param, (body, resp.text)
    assert admin(live, "PATCH", "keys/victim", {"rpm": 2**64}).json()["error"]["param"] == "rpm"
    assert admin(live, "PATCH", "keys/victim", {"team": "<script>"}).json()["error"]["param"] == "team"
    renamed = admin(live, "PATCH", "keys/victim", {"name": "renamed"})
    assert renamed.status_code == 400 and "cannot be changed" in renamed.json()["error"]["message"]
    assert admin(live, "PATCH", "keys/victim", {"name": "victim", "rpm": 100}).json()["rpm"] == 100
    assert admin(live, "POST", "teams", {"name": "t", "tpm": 2**64}).json()["error"]["param"] == "tpm"
    listed = admin(live, "GET", "keys")
    assert listed.status_code == 200 and [k["name"] for k in listed.json()["data"]] == ["static", "victim"]
    # The last instant a date holds is taken, kept in UTC.
    late = admin(live, "POST", "keys", {"name": "late", "expires_at": "9999-12-31T11:00:00-12:00"})
    assert late.status_code == 201 and late.json()["expires_at"] == "9999-12-31T23:00:00+00:00"
    assert chat(live, victim).status_code == 200
    assert admin(live, "DELETE", "keys/victim").status_code == 200
    wait_until(lambda: chat(live, victim).status_code == 401, 5, "the revoked key refused")


def test_a_team_made_by_the_api_shares_its_limits(live: Live) -> None:
    room_in_this_minute()
    assert admin(live, "POST", "teams", {"name": "web", "rpm": 2}).status_code == 201
    a = admin(live, "POST", "keys", {"name": "wa", "team": "web"}).json()["secret"]
    b = admin(live, "POST", "keys", {"name": "wb", "team": "web"}).json()["secret"]
    assert [chat(live, s).status_code for s in (a, b, a)] == [200, 200, 429]
    assert admin(live, "PATCH", "teams/web", {"rpm": 10}).json()["rpm"] == 10
    assert chat(live, b).status_code == 200
    assert [(t["name"], t["source"]) for t in admin(live, "GET", "teams").json()["data"]] == [
        ("ops", "config"), ("web", "store")]
    # Deleting a team its keys still name would lift its limits from them without a word: refused unless forced.
    kept = admin(live, "DELETE", "teams/web")
    assert kept.status_code == 409 and "still holds keys wa, wb" in kept.json()["error"]["message"]
    assert admin(live, "GET", "teams/web").status_code == 200
    gone = admin(live, "DELETE", "teams/web", {"force": True})
    assert gone.status_code == 200 and gone.json()["keys_left_without_team_limits"] == ["wa", "wb"]


def test_config_keys_keep_working_and_no_secret_reaches_the_log(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    made = admin(live, "POST", "keys", {"name": "logged"}).json()["secret"]
    assert chat(live, ENV["STATIC_KEY"]).status_code == 200
    assert chat(live, made).status_code == 200
    wait_until(lambda: "key=logged" in caplog.text, what="the access line of the made key")
    assert "key=static team=ops" in caplog.text and "key=logged" in caplog.text
    assert made not in caplog.text and ADMIN not in caplog.text and ENV["STATIC_KEY"] not in caplog.text


def test_a_key_made_by_the_cli_counts_in_a_running_gateway(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from polyroute.cli import main

    store = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["keys", "create", "cli1", "--store", store, "--rpm", "5", "--team", "t"]) == 2  # no team t yet
    assert "team 't' is not defined" in capsys.readouterr().err
    assert main(["teams", "create", "t", "--store", store]) == 0
    assert main(["keys", "create", "cli1", "--store", store, "--rpm", "5", "--team", "t"]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert secret.startswith("pr-")
    # The gateway reads the store every second.
    wait_until(lambda: chat(live, secret).status_code == 200, what="the gateway to see the new key")
    assert chat(live, secret).headers["x-ratelimit-limit-requests"] == "5"
    assert main(["keys", "revoke", "cli1", "--store", store]) == 0
    wait_until(lambda: chat(live, secret).status_code == 401, what="the gateway to see the revocation")
    assert chat(live, secret).status_code == 401


def test_a_key_whose_policy_the_config_lacks_is_refused_with_403(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The store takes any policy name (the CLI may not know the gateway's config): such a key fails closed."""
    from polyroute.cli import main

    store = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["keys", "create", "ghostly", "--store", store, "--policy", "ghost"]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    wait_until(lambda: chat(live, secret).status_code != 401, what="the gateway to see the new key")
    refused = chat(live, secret)
    assert refused.status_code == 403
    err = refused.json()["error"]
    assert err["type"] == "permission_error" and "policy 'ghost' is not defined" in err["message"]


def test_the_cli_speaks_to_a_running_gateway_with_the_admin_key(
    live: Live, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from polyroute.cli import main

    assert main(["keys", "list", "--url", live.root]) == 2  # no admin key exported
    assert "POLYROUTE_ADMIN_KEY" in capsys.readouterr().err
    monkeypatch.setenv("POLYROUTE_ADMIN_KEY", ADMIN)
    assert main(["keys", "create", "remote", "--url", live.root, "--budget-usd", "2", "--routes", "echo"]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert chat(live, secret).status_code == 200
    assert main(["keys", "list", "--url", live.root, "--format", "json"]) == 0
    listed = capsys.readouterr().out
    assert '"budget_usd": 2.0' in listed and secret not in listed
    assert main(["keys", "rotate", "remote", "--url", live.root]) == 0
    rotated = capsys.readouterr().out.strip().splitlines()[-1]
    assert chat(live, secret).status_code == 401 and chat(live, rotated).status_code == 200
    assert main(["keys", "revoke", "remote", "--url", live.root]) == 0
    assert chat(live, rotated).status_code == 401
    assert main(["keys", "create", "remote", "--url", live.root]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["teams", "create", "far", "--url", live.root, "--rpm", "7"]) == 0
    assert main(["teams", "list", "--url", live.root]) == 0
    assert "far" in capsys.readouterr().out and admin(live, "GET", "teams/far").json()["rpm"] == 7
    assert main(["teams", "delete", "far", "--url", live.root]) == 0
    assert admin(live, "GET", "teams/far").status_code == 404


def test_the_admin_key_reads_what_an_operator_reads_and_is_told_apart_on_chat(live: Live) -> None:
    auth = {"authorization": f"Bearer {ADMIN}"}
    chat = httpx.post(f"{live.base_url}/chat/completions", headers=auth, timeout=30,
                      json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 401
    assert "This is the admin key" in chat.json()["error"]["message"] and ADMIN not in chat.text
    assert httpx.get(f"{live.base_url}/models", headers=auth, timeout=30).status_code == 200
    assert httpx.get(f"{live.base_url}/health/backends", headers=auth, timeout=30).status_code == 200
    wrong = httpx.get(f"{live.base_url}/models", headers={"authorization": "Bearer sk-wrong-0123456789"}, timeout=30)
    assert wrong.status_code == 401 and "admin" not in wrong.json()["error"]["message"]


def test_a_team_of_the_config_cannot_be_made_again_in_the_store(live: Live) -> None:
    """The config's team would win: one made in the store would be shown and never held to."""
    made = admin(live, "POST", "teams", {"name": "ops", "budget_usd": 1.0})
    assert made.status_code == 409 and "defined in the config file" in made.json()["error"]["message"]
    # Listed once, as the config's; read and changed only there.
    assert [(t["name"], t["source"]) for t in admin(live, "GET", "teams").json()["data"]] == [("ops", "config")]
    assert admin(live, "GET", "teams/ops").json()["source"] == "config"
    changed = admin(live, "PATCH", "teams/ops", {"rpm": 1})
    assert changed.status_code == 409 and "change it there" in changed.json()["error"]["message"]
    key = admin(live, "GET", "keys/static").json()
    assert (key["source"], key["created_at"]) == ("config", None) and "secret" not in key
    assert "STATIC_KEY" not in admin(live, "GET", "keys").text  # not even the env: location of its secret
    assert admin(live, "DELETE", "keys/static").status_code == 409
