"""The console over HTTP: pages, assets and the API under ``/console``, behind an admin session.

    /console, /console/                    to the Overview, or to the login page
    /console/login                         the login page (no session needed)
    /console/static/NAME                   assets; only the login page's need no session
    /console/api/login   POST {"secret"}   the admin key in, a session cookie out (no session needed)
    /console/api/logout  POST              the session revoked, for every worker and replica
    /console/api/session GET               the session's CSRF token, for the page's scripts
    /console/api/...                       ``polyroute.console.api``
    /console/PAGE                          overview, fleet, usage, keys, routes, evals; any other
                                           name is the shell answered 404, which says so

Without a live session an API call is answered 401 (OpenAI's error shape), a page
303 to the login page, which returns to that page (``?next=``) once logged in. The
session is a signed cookie (``polyroute.console.sessions``), so any worker of any
replica accepts it; an answer to a session in use may carry the cookie issued again,
its idle deadline moved on. Every call but a GET also needs the
session's CSRF token in ``x-csrf-token``. The cookie is HttpOnly, SameSite=Strict, scoped to ``/console``,
and Secure when the request came over TLS (polyroute does not terminate TLS: the
proxy in front says so with ``X-Forwarded-Proto: https``). Every answer carries a
Content-Security-Policy that allows scripts and styles from the gateway only (no
inline script), and forbids framing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlencode, urlsplit

import orjson

from polyroute.console.api import ConsoleApi
from polyroute.console.recent import Recent
from polyroute.console.sessions import LoginThrottle, Session, Sessions
from polyroute.errors import (
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PolyrouteError,
    RateLimitExceeded,
    Unauthorized,
)
from polyroute.gateway import Gateway
from polyroute.server.admin import Admin
from polyroute.server.answers import Reply
from polyroute.server.dispatch import Handler
from polyroute.server.errors import error_response
from polyroute.server.http11 import Request

log = logging.getLogger("polyroute.console")

ROOT = "/console"
COOKIE = "polyroute_console"
PAGES = ("overview", "fleet", "usage", "keys", "routes", "evals")
# What the login page loads: served without a session.
PUBLIC_ASSETS = frozenset({"console.css", "login.js", "icon.svg"})
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
METHODS = ("GET", "POST", "PATCH", "DELETE")


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str


def load_assets() -> dict[str, Asset]:
    """Every file under ``static/``, by its path there (``pages/fleet.js``), read once at start."""
    found: dict[str, Asset] = {}

    def walk(folder: resources.abc.Traversable, prefix: str) -> None:
        for item in folder.iterdir():
            if item.is_dir():
                walk(item, f"{prefix}{item.name}/")
            else:
                suffix = item.name[item.name.rfind("."):]
                if suffix in _TYPES:
                    found[prefix + item.name] = Asset(item.read_bytes(), _TYPES[suffix])

    walk(resources.files("polyroute.console") / "static", "")
    return found


class Console:
    def __init__(self, gateway: Gateway, admin: Admin, admin_digest: bytes, recent: Recent,
                 sessions: Sessions | None = None) -> None:
        self.api = ConsoleApi(gateway, admin, recent)
        self.sessions = sessions or Sessions(admin_digest, admin.store)
        self.throttle = LoginThrottle()
        self._digest = admin_digest
        self.assets = load_assets()

    def routes(self) -> dict[str, dict[str, Handler]]:
        return {ROOT: dict.fromkeys(METHODS, self.handle)}

    def prefixes(self) -> dict[str, dict[str, Handler]]:
        return {ROOT + "/": dict.fromkeys(METHODS, self.handle)}

    async def handle(self, request: Request) -> Reply:
        try:
            reply = await self._serve(request)
        except PolyrouteError as exc:
            reply = error_response(exc)
        reply.headers.update(SECURITY_HEADERS)
        reply.headers.setdefault("cache-control", "no-store")
        return reply

    async def _serve(self, request: Request) -> Reply:
        path, method = request.path.rstrip("/"), request.method
        rest = path.removeprefix(ROOT).strip("/")
        session = await self.sessions.get(_cookie(request.header(b"cookie"), COOKIE))
        if rest == "login":
            _only(method, "GET")
            return _redirect(f"{ROOT}/overview") if session else self._asset("login.html")
        if rest == "api/login":
            _only(method, "POST")
            return self.login(request)
        if rest.startswith("static/") and rest.removeprefix("static/") in PUBLIC_ASSETS:
            _only(method, "GET")
            return self._asset(rest.removeprefix("static/"), cache=True)
        if rest.startswith(("api/", "static/")):
            if session is None:
                raise Unauthorized("The console needs a session: log in at /console/login with the admin key.")
        elif session is None:  # back to the page asked for once logged in
            return _redirect(f"{ROOT}/login?{urlencode({'next': _here(request)})}" if rest else f"{ROOT}/login")
        if method != "GET" and not self.sessions.csrf_matches(session, request.header(b"x-csrf-token")):
            raise Forbidden("This action needs the session's CSRF token in the 'x-csrf-token' header.")
        if rest == "api/logout":
            _only(method, "POST")
            await self.sessions.close(session)
            log.info("console: logged out")
            return _json({"logged_out": True}, headers={"set-cookie": self._cookie("", 0, request)})
        reply = await self._signed_in(request, rest, session)
        renewed = self.sessions.renewed(session)
        if renewed is not None:  # the idle deadline moves with use
            token, fresh = renewed
            reply.headers["set-cookie"] = self._cookie(token, self._max_age(fresh), request)
        return reply

    async def _signed_in(self, request: Request, rest: str, session: Session) -> Reply:
        method = request.method
        if rest.startswith("static/"):
            _only(method, "GET")
            return self._asset(rest.removeprefix("static/"), cache=True)
        if rest == "api/session":
            _only(method, "GET")
            return _json({"csrf": session.csrf, "expires_in_s": self._max_age(session)})
        if rest.startswith("api/"):
            return await self.api.answer(method, rest.removeprefix("api/").split("/"), request.body)
        if rest == "":
            return _redirect(f"{ROOT}/overview")
        _only(method, "GET")
        page = self._asset("shell.html")
        if rest not in PAGES:  # the shell says so, with the menu, rather than an API error
            page.status = 404
        return page

    def login(self, request: Request) -> Reply:
        _same_origin(request)
        if not (request.header(b"content-type") or "").startswith("application/json"):
            raise InvalidRequest("Log in with a JSON body: {\"secret\": \"<admin key>\"}.")
        try:
            raw = orjson.loads(request.body or b"{}")
        except orjson.JSONDecodeError:
            raw = None
        secret = raw.get("secret") if isinstance(raw, dict) else None
        if not isinstance(secret, str) or not secret:
            raise InvalidRequest("Log in with a JSON body: {\"secret\": \"<admin key>\"}.", param="secret")
        wait = self.throttle.wait()
        if wait > 0:
            seconds = max(int(wait + 0.999), 1)
            raise RateLimitExceeded(f"Too many wrong logins to the console; try again in {seconds} s.",
                                    retry_after=seconds)
        if not hmac.compare_digest(hashlib.sha256(secret.encode("utf-8")).digest(), self._digest):
            self.throttle.failed()
            log.warning("console: a login with a wrong admin key was refused")
            raise Unauthorized("That is not the admin key.")
        token, session = self.sessions.open()
        log.info("console: logged in")
        return _json({"csrf": session.csrf}, headers={
            "set-cookie": self._cookie(token, self._max_age(session), request)})

    def _max_age(self, session: Session) -> int:
        return max(int(session.expires - self.sessions.clock()), 0)

    def _cookie(self, value: str, max_age: int, request: Request) -> str:
        secure = "; Secure" if (request.header(b"x-forwarded-proto") or "").lower() == "https" else ""
        return f"{COOKIE}={value}; Path={ROOT}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"

    def _asset(self, name: str, cache: bool = False) -> Reply:
        asset = self.assets.get(name)
        if asset is None:
            raise NotFound(f"No console asset {name!r}")
        headers = {"cache-control": "no-cache"} if cache else {}
        return Reply(asset.body, 200, headers, content_type=asset.content_type)


def _same_origin(request: Request) -> None:
    """A login posted from another site's page is refused (browsers send ``Origin`` on every POST)."""
    origin = request.header(b"origin")
    if origin is None:
        return
    host = request.header(b"host") or ""
    if origin == "null" or urlsplit(origin).netloc != host:
        raise Forbidden("The console takes logins from its own pages only.")


def _here(request: Request) -> str:
    query = request.query.decode("latin-1")
    return f"{request.path}?{query}" if query else request.path


def _cookie(header: str | None, name: str) -> str | None:
    for part in (header or "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


def _only(method: str, allowed: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(f"Method {method} is not allowed here (allowed: {allowed})")


def _redirect(to: str) -> Reply:
    return Reply(b"", 303, {"location": to}, content_type="text/plain")


def _json(doc: object, headers: dict[str, str] | None = None) -> Reply:
    return Reply(orjson.dumps(doc), 200, headers)


__all__ = ["Console", "Session"]
