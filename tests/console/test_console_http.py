"""The console refuses everything without the admin session, every action without its CSRF token,
and shows no secret anywhere but in the one answer that makes it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from polyroute.console.web import PAGES, PUBLIC_ASSETS, load_assets
from tests.support.live import Live, live_gateway

ADMIN = "admin-console-0123456789abcdef"
ENV = {"POLYROUTE_ADMIN_KEY": ADMIN, "STATIC_KEY": "sk-static-console-0123456789"}
ASSETS = sorted(load_assets())
API_GETS = ["session", "overview", "fleet", "usage/1d/key", "usage/7d/model/csv", "keys", "teams", "routes", "evals"]
# Every action of the console: (method, API path, JSON body).
ACTIONS = [
    ("POST", "keys", {"name": "csrf-probe"}),
    ("PATCH", "keys/victim", {"rpm": 1}),
    ("DELETE", "keys/victim", None),
    ("POST", "keys/victim/rotate", None),
    ("POST", "teams", {"name": "csrf-team"}),
    ("DELETE", "teams/csrf-team", None),
    ("POST", "explain", {"route": "echo", "prompt": "hi"}),
    ("POST", "logout", None),
]


def raw(tmp: Path) -> dict[str, object]:
    return {
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f", "input_per_mtok": 1.0, "output_per_mtok": 2.0}},
        "admin": {"secret": "env:POLYROUTE_ADMIN_KEY"},
        "store": {"url": f"sqlite:///{tmp / 'store.db'}", "flush_interval": 0.05},
        "keys": {"static": {"secret": "env:STATIC_KEY", "team": "ops"}},
        "teams": {"ops": {}, "web": {"budget_usd": 50.0}},
        "evals": {"db": str(tmp / "evals.db")},
    }


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_gateway(raw(tmp_path), env=ENV) as g:
        yield g


def client(live: Live) -> httpx.Client:
    return httpx.Client(base_url=live.root, timeout=10, follow_redirects=False)


def login(c: httpx.Client, headers: dict[str, str] | None = None) -> str:
    """Log in; the CSRF token of the new session."""
    r = c.post("/console/api/login", json={"secret": ADMIN}, headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["csrf"])


def test_without_a_session_every_page_redirects_and_every_api_call_is_401(live: Live) -> None:
    with client(live) as c:
        for page in ["/console", "/console/"]:
            r = c.get(page)
            assert r.status_code == 303 and r.headers["location"] == "/console/login", page
        for page in [*(f"/console/{p}" for p in PAGES), "/console/nowhere", "/console/usage?since=7d"]:
            r = c.get(page)  # the login page is told where to go back to
            assert r.status_code == 303 and r.headers["location"] == "/console/login?" + urlencode({"next": page})
        for path in API_GETS:
            r = c.get(f"/console/api/{path}")
            assert r.status_code == 401, path
            assert r.json()["error"]["type"] == "authentication_error"
        for method, path, body in ACTIONS:
            r = c.request(method, f"/console/api/{path}", json=body, headers={"x-csrf-token": "anything"})
            assert r.status_code == 401, (method, path)
        for name in ASSETS:
            r = c.get(f"/console/static/{name}")
            assert r.status_code == (200 if name in PUBLIC_ASSETS else 401), name
        assert c.get("/console/login").status_code == 200


def test_a_wrong_key_a_foreign_origin_and_a_form_post_do_not_log_in(live: Live) -> None:
    with client(live) as c:
        wrong = c.post("/console/api/login", json={"secret": ENV["STATIC_KEY"]})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        foreign = c.post("/console/api/login", json={"secret": ADMIN}, headers={"origin": "https://evil.example"})
        assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
        form = c.post("/console/api/login", data={"secret": ADMIN})
        assert form.status_code == 400 and "set-cookie" not in form.headers
        assert c.get("/console/api/overview").status_code == 401


def test_the_session_cookie_is_httponly_strict_and_secure_behind_tls(live: Live) -> None:
    with client(live) as c:
        r = c.post("/console/api/login", json={"secret": ADMIN})
        cookie = r.headers["set-cookie"]
        assert re.match(r"^polyroute_console=[A-Za-z0-9_-]{40,};", cookie)
        assert {"HttpOnly", "SameSite=Strict", "Path=/console"} <= {p.strip() for p in cookie.split(";")}
        assert "Secure" not in cookie
    with client(live) as c:
        tls = c.post("/console/api/login", json={"secret": ADMIN}, headers={"x-forwarded-proto": "https"})
        assert "; Secure" in tls.headers["set-cookie"]


def test_every_action_needs_the_csrf_token(live: Live) -> None:
    with client(live) as c:
        csrf = login(c)
        assert c.post("/console/api/keys", json={"name": "victim"}, headers={"x-csrf-token": csrf}).status_code == 201
        for method, path, body in ACTIONS:
            for headers in ({}, {"x-csrf-token": "not-the-token"}, {"x-csrf-token": ""}):
                r = c.request(method, f"/console/api/{path}", json=body, headers=headers)
                assert r.status_code == 403, (method, path, headers)
                assert "CSRF" in r.json()["error"]["message"]
        # None of them happened.
        keys = c.get("/console/api/keys").json()["keys"]
        assert [(k["name"], k["revoked"], k["rpm"]) for k in keys] == [("victim", False, None)]
        assert c.get("/console/api/overview").status_code == 200
        # With the token each works; logging out ends the session.
        assert c.patch("/console/api/keys/victim", json={"rpm": 5}, headers={"x-csrf-token": csrf}).json()["rpm"] == 5
        assert c.post("/console/api/logout", headers={"x-csrf-token": csrf}).status_code == 200
        assert c.get("/console/api/overview").status_code == 401


def test_no_answer_but_the_making_one_holds_a_secret(live: Live) -> None:
    with client(live) as c:
        csrf = login(c)
        made = c.post("/console/api/keys", json={"name": "shown-once", "team": "web", "budget_usd": 2},
                      headers={"x-csrf-token": csrf})
        assert made.status_code == 201
        secret = made.json()["secret"]
        assert httpx.post(f"{live.base_url}/chat/completions", headers={"authorization": f"Bearer {secret}"},
                          json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
        explained = c.post("/console/api/explain", json={"route": "echo", "prompt": "hi", "key": "shown-once"},
                           headers={"x-csrf-token": csrf})
        assert explained.status_code == 200 and explained.json()["order"][0]["model"] == "echo"
        bodies = [c.get(f"/console/api/{p}").text for p in API_GETS]
        bodies += [c.get(f"/console/{p}").text for p in PAGES]
        bodies += [c.get(f"/console/static/{name}").text for name in ASSETS]
        for body in bodies:
            for hidden in (secret, ADMIN, ENV["STATIC_KEY"]):
                assert hidden not in body


def test_every_answer_carries_the_content_security_policy(live: Live) -> None:
    with client(live) as c:
        answers = [c.get("/console/login"), c.get("/console/overview"), c.get("/console/api/fleet"),
                   c.post("/console/api/login", json={"secret": "wrong"})]
        login(c)
        answers += [c.get("/console/overview"), c.get("/console/api/fleet"), c.get("/console/static/app.js")]
        for r in answers:
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "no-referrer"


def test_the_pages_have_no_inline_script_nor_style() -> None:
    assets = load_assets()
    for name, asset in assets.items():
        if not name.endswith(".html"):
            continue
        html = asset.body.decode()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert 'src="/console/static/' in tag, (name, tag)
        assert all(not body.strip() for body in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)), name
        assert "<style" not in html and " style=" not in html and not re.search(r"\son[a-z]+=", html), name
        for ref in re.findall(r'(?:src|href)="(/[^"]*)"', html):
            assert ref.startswith("/console/"), (name, ref)  # nothing from elsewhere


def test_the_first_load_is_under_300_kb() -> None:
    """The login page and the Overview with everything they load, modules followed through their imports."""
    assets = load_assets()

    def closure(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            text = assets[name].body.decode()
            refs = re.findall(r'(?:src|href)="/console/static/([^"]+)"', text)
            base = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
            for rel in re.findall(r'from "\./([^"]+)"', text):
                refs.append(base + rel)
            for rel in re.findall(r'from "\.\./([^"]+)"', text):
                refs.append(rel)
            todo += refs
        return seen

    first = closure("login.html") | closure("shell.html") | closure("pages/overview.js")
    weight = sum(len(assets[n].body) for n in first)
    assert {"login.js", "app.js", "api.js", "dom.js", "chart.js", "console.css"} <= first
    assert weight < 300_000, weight


def test_rotate_shows_the_new_secret_once_and_the_old_one_stops(live: Live) -> None:
    def chat(secret: str) -> int:
        return httpx.post(f"{live.base_url}/chat/completions", headers={"authorization": f"Bearer {secret}"},
                          json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}).status_code

    with client(live) as c:
        csrf = login(c)
        old = c.post("/console/api/keys", json={"name": "turn"}, headers={"x-csrf-token": csrf}).json()["secret"]
        assert chat(old) == 200
        rotated = c.post("/console/api/keys/turn/rotate", headers={"x-csrf-token": csrf})
        assert rotated.status_code == 200
        new = rotated.json()["secret"]
        assert new != old and chat(new) == 200 and chat(old) == 401
        assert new not in c.get("/console/api/keys").text
        revoked = c.delete("/console/api/keys/turn", headers={"x-csrf-token": csrf})
        assert revoked.json()["revoked"] is True and "secret" not in revoked.json()
        assert chat(new) == 401


def test_bad_input_gets_an_openai_shaped_error_never_a_500(live: Live) -> None:
    with client(live) as c:
        csrf = login(c)
        h = {"x-csrf-token": csrf}
        cases = [
            (c.post("/console/api/keys", content=b"{not json", headers=h), 400),
            (c.post("/console/api/keys", json={"name": "bad name!"}, headers=h), 400),
            (c.post("/console/api/keys", json={"name": "x", "budget_usd": -1}, headers=h), 400),
            (c.post("/console/api/keys", json={"name": "x", "routes": ["nowhere"]}, headers=h), 400),
            (c.delete("/console/api/keys/nobody", headers=h), 404),
            (c.post("/console/api/explain", content=b"[]", headers=h), 400),
            (c.post("/console/api/explain", json={"route": "nowhere", "prompt": "hi"}, headers=h), 404),
            (c.post("/console/api/explain", json={"route": "echo", "prompt": ""}, headers=h), 400),
            (c.post("/console/api/explain", json={"route": "echo", "prompt": "hi", "key": "nobody"}, headers=h), 400),
            (c.post("/console/api/explain", json={"route": "echo", "prompt": "hi", "policy": "none"}, headers=h), 400),
            (c.get("/console/api/usage/2y/key"), 400),
            (c.get("/console/api/usage/1d/colour"), 400),
            (c.get("/console/api/usage/1d/key/xlsx"), 404),
            (c.get("/console/api/nothing"), 404),
            (c.get("/console/api/explain"), 405),
            (c.post("/console/api/overview", headers=h), 405),
            (c.get("/console/static/nothing.js"), 404),
            (c.post("/console/nothing", headers=h), 405),
        ]
        for r, status in cases:
            assert r.status_code == status, (r.request.method, r.request.url, r.status_code, r.text)
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_an_unknown_page_is_the_console_saying_so_not_json(live: Live) -> None:
    """A mistyped page address shows the console's shell, whose menu leads on, answered 404."""
    with client(live) as c:
        login(c)
        r = c.get("/console/nothing/here")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert 'id="nav"' in r.text and "content-security-policy" in r.headers


def test_guessing_the_admin_key_is_slowed(live: Live) -> None:
    with client(live) as c:
        for _ in range(10):
            assert c.post("/console/api/login", json={"secret": "guess"}).status_code == 401
        slowed = c.post("/console/api/login", json={"secret": ADMIN})
        assert slowed.status_code == 429 and int(slowed.headers["retry-after"]) >= 1
        assert f"try again in {slowed.headers['retry-after']} s" in slowed.json()["error"]["message"]
        assert "set-cookie" not in slowed.headers
        # The admin API itself is not affected.
        assert c.get("/admin/keys", headers={"authorization": f"Bearer {ADMIN}"}).status_code == 200
