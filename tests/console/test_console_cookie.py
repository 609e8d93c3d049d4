"""The console's cookie over time, on the console's own handler with a clock of the test's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from polyroute import config as cfg
from polyroute.catalog import load_catalog
from polyroute.console.recent import Recent
from polyroute.console.sessions import Sessions
from polyroute.console.web import COOKIE, Console
from polyroute.gateway import Gateway
from polyroute.server.admin import Admin
from polyroute.server.answers import Reply
from polyroute.server.http11 import Request
from polyroute.tenancy.sqlite import SqliteStore

pytestmark = pytest.mark.anyio
ADMIN = "admin-cookie-0123456789abcdef"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def console(tmp: Path, clock: Clock) -> Console:
    raw = {"backends": {"f": {"type": "fake"}}, "models": {"echo": {"backend": "f"}},
           "admin": {"secret": "env:POLYROUTE_ADMIN_KEY"}, "store": {"url": f"sqlite:///{tmp / 'store.db'}"}}
    gateway = Gateway.from_config(cfg.parse(raw, source="<test>", env={"POLYROUTE_ADMIN_KEY": ADMIN}),
                                  load_catalog())
    digest = hashlib.sha256(ADMIN.encode()).digest()
    store = SqliteStore(tmp / "store.db")
    sessions = Sessions(digest, store, lifetime=8 * 3600, idle=3600, renew_after=60, clock=clock)
    return Console(gateway, Admin(gateway, store, digest), digest, Recent(), sessions)


async def ask(c: Console, method: str, path: str, cookie: str, csrf: str | None = None) -> Reply:
    headers = [(b"cookie", f"{COOKIE}={cookie}".encode())]
    if csrf is not None:
        headers.append((b"x-csrf-token", csrf.encode()))
    return await c.handle(Request(method, path, headers, b"", True))


def cookie_of(reply: Reply) -> tuple[str, int]:
    """The value and Max-Age of the cookie an answer sets."""
    value, *attributes = reply.headers["set-cookie"].split("; ")
    age = next(int(a.removeprefix("Max-Age=")) for a in attributes if a.startswith("Max-Age="))
    return value.removeprefix(f"{COOKIE}="), age


async def test_a_session_in_use_is_renewed_and_one_left_alone_expires(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    c = console(tmp_path, clock)
    login = await c.handle(Request("POST", "/console/api/login", [(b"content-type", b"application/json")],
                                   f'{{"secret": "{ADMIN}"}}'.encode(), True))
    cookie, age = cookie_of(login)
    assert age == 3600  # the idle deadline; the lifetime is longer
    clock.now += 30
    fresh = await ask(c, "GET", "/console/api/overview", cookie)
    assert fresh.status == 200 and "set-cookie" not in fresh.headers  # too fresh to renew
    clock.now += 3000
    used = await ask(c, "GET", "/console/api/overview", cookie)
    assert used.status == 200
    renewed, age = cookie_of(used)
    assert renewed != cookie and age == 3600
    clock.now += 3000  # past the first cookie's idle deadline, within the renewed one's
    assert (await ask(c, "GET", "/console/api/overview", cookie)).status == 401
    assert (await ask(c, "GET", "/console/api/overview", renewed)).status == 200
    clock.now += 3601
    assert (await ask(c, "GET", "/console/api/overview", renewed)).status == 401
    page = await ask(c, "GET", "/console/fleet", renewed)
    assert page.status == 303 and page.headers["location"] == "/console/login?next=%2Fconsole%2Ffleet"


async def test_logout_clears_the_cookie_and_no_renewal_brings_it_back(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    c = console(tmp_path, clock)
    cookie, session = c.sessions.open()
    clock.now += 600  # due for renewal: the logout's answer must clear the cookie all the same
    out = await ask(c, "POST", "/console/api/logout", cookie, session.csrf)
    assert out.status == 200 and cookie_of(out) == ("", 0)
    assert (await ask(c, "GET", "/console/api/session", cookie)).status == 401
