"""Console sessions: signed cookies any worker or replica can check, and logouts kept in the shared store.

A session is not held by the process that made it: the cookie carries it, signed.

    cookie = base64url( version | session id | started | issued | expires | HMAC-SHA256 of all before )

``started`` is the login, ``issued`` when this cookie was made, ``expires`` the
sooner of ``started + lifetime`` and ``issued + idle``. A cookie more than
``renew_after`` seconds old is issued again with the request it came with, so
a session in use keeps moving its idle deadline (to within ``renew_after``)
but never past its lifetime.

The keys are derived from the admin secret's digest, so every worker of every
replica configured with the same admin secret computes the same ones, and changing
the admin secret ends every session. The derivation is stretched (PBKDF2, once per
process at start, salted with a label of the console's own) because a cookie can
be used to test guesses of the admin secret offline; each key then has a label of
its own. The CSRF token is an HMAC of the session id under the second key: any
process can check it, and it stays the same however often the cookie is renewed.

Logging out writes the session id to the store's revocation record
(``Revocations``: the tenancy ``KeyStore`` implements it), which every process
reads before accepting a cookie; a revoked id is also remembered in the process,
since a revocation is never undone. Every comparison of a secret is constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from polyroute.errors import StoreUnavailable

LIFETIME_S = 8 * 3600.0
IDLE_S = 3600.0
RENEW_AFTER_S = 60.0
VERSION = 1
_FIELDS = struct.Struct(">B16sddd")  # version, session id, started, issued, expires (epoch seconds)
_MAC = hashlib.sha256().digest_size
_STRETCH_LABEL = b"polyroute console sessions"
_STRETCH_ROUNDS = 600_000  # PBKDF2-HMAC-SHA256, as OWASP's password storage guidance sets it
_SIGNING_LABEL = b"polyroute console session cookie v1"
_CSRF_LABEL = b"polyroute console csrf token v1"
_REMEMBERED = 1024  # revoked ids a process keeps in memory
_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{1,{2 * (_FIELDS.size + _MAC)}}}")


class Revocations(Protocol):
    """Where logouts are kept, shared by every process that checks cookies."""

    async def revoke_session(self, session_id: str, until: float) -> None:
        """Record a logout; after ``until`` (epoch seconds) the session is expired anyway and the record may go."""
        ...

    async def session_revoked(self, session_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Session:
    id: str  # hex; not a credential without the signature
    csrf: str
    started: float
    issued: float
    expires: float


def derive_keys(admin_digest: bytes) -> tuple[bytes, bytes]:
    """The cookie's signing key and the CSRF tokens' key."""
    root = hashlib.pbkdf2_hmac("sha256", admin_digest, _STRETCH_LABEL, _STRETCH_ROUNDS)
    return (hmac.new(root, _SIGNING_LABEL, hashlib.sha256).digest(),
            hmac.new(root, _CSRF_LABEL, hashlib.sha256).digest())


class Sessions:
    def __init__(self, admin_digest: bytes, revocations: Revocations, lifetime: float = LIFETIME_S,
                 idle: float = IDLE_S, renew_after: float = RENEW_AFTER_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.lifetime = lifetime
        self.idle = idle
        self.renew_after = renew_after
        self.clock = clock
        self._revocations = revocations
        self._signing, self._csrf = derive_keys(admin_digest)
        self._revoked: OrderedDict[str, None] = OrderedDict()

    def open(self) -> tuple[str, Session]:
        """A new session and its cookie value."""
        now = self.clock()
        return self._issue(secrets.token_bytes(16), now, now)

    async def get(self, token: str | None) -> Session | None:
        """The session a cookie value proves, or None: unsigned, malformed, expired or logged out."""
        session = self._verify(token)
        if session is None or session.id in self._revoked:
            return None
        try:
            revoked = await self._revocations.session_revoked(session.id)
        except StoreUnavailable:
            raise
        except Exception as exc:  # a locked or vanished SQLite file: fail closed, as a 503, not a 500
            raise StoreUnavailable(f"the store cannot be read to check the session ({type(exc).__name__})") from None
        if revoked:
            self._remember(session.id)
            return None
        return session

    def renewed(self, session: Session) -> tuple[str, Session] | None:
        """A fresh cookie for a session in use, once its cookie is ``renew_after`` old; else None."""
        now = self.clock()
        if now - session.issued < self.renew_after:
            return None
        return self._issue(bytes.fromhex(session.id), session.started, now)

    async def close(self, session: Session) -> None:
        """Log out: the session is refused by every process from now on."""
        self._remember(session.id)
        await self._revocations.revoke_session(session.id, session.started + self.lifetime)

    def csrf_matches(self, session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(session.csrf.encode(),
                                                             presented.encode("utf-8", "replace"))

    def _issue(self, raw_id: bytes, started: float, now: float) -> tuple[str, Session]:
        expires = min(started + self.lifetime, now + self.idle)
        fields = _FIELDS.pack(VERSION, raw_id, started, now, expires)
        mac = hmac.new(self._signing, fields, hashlib.sha256).digest()
        token = base64.urlsafe_b64encode(fields + mac).rstrip(b"=").decode("ascii")
        return token, Session(raw_id.hex(), self._csrf_of(raw_id), started, now, expires)

    def _verify(self, token: str | None) -> Session | None:
        if not token or not _TOKEN.fullmatch(token):
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except binascii.Error:
            return None
        if len(raw) != _FIELDS.size + _MAC:
            return None
        fields, mac = raw[:_FIELDS.size], raw[_FIELDS.size:]
        if not hmac.compare_digest(hmac.new(self._signing, fields, hashlib.sha256).digest(), mac):
            return None
        version, raw_id, started, issued, expires = _FIELDS.unpack(fields)
        if version != VERSION or self.clock() >= expires:
            return None
        return Session(raw_id.hex(), self._csrf_of(raw_id), started, issued, expires)

    def _csrf_of(self, raw_id: bytes) -> str:
        mac = hmac.new(self._csrf, raw_id, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def _remember(self, session_id: str) -> None:
        self._revoked[session_id] = None
        while len(self._revoked) > _REMEMBERED:
            self._revoked.popitem(last=False)


class LoginThrottle:
    """Past ``limit`` wrong logins within ``window`` seconds, logins wait until the oldest leaves the window.

    One counter for the process, not per client: the gateway does not know who is behind a
    proxy, and guessing an admin key must stay slow whoever guesses. The admin API is unaffected.
    Each worker process counts its own, so ``--workers N`` allows up to N times ``limit``.
    """

    def __init__(self, limit: int = 10, window: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: list[float] = []

    def wait(self) -> float:
        """Seconds before a login may be tried; 0 when now."""
        now = self.clock()
        self._failures = [t for t in self._failures if now - t < self.window]
        if len(self._failures) < self.limit:
            return 0.0
        return self._failures[0] + self.window - now

    def failed(self) -> None:
        self._failures.append(self.clock())
