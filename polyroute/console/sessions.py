"""Console sessions: who logged in with the admin key, kept in the process, each with its CSRF token.

A session is a random id (the cookie's value) mapped to its CSRF token and two
deadlines: an absolute one (``lifetime`` after login) and an idle one (``idle``
after its last use). Ids are compared by lookup of their SHA-256, so the table
never holds a usable cookie. The table is bounded: past ``capacity`` sessions the
oldest is dropped. Sessions live in the process that made them; logging out
forgets the session at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

LIFETIME_S = 8 * 3600.0
IDLE_S = 3600.0
CAPACITY = 1000


@dataclass(slots=True)
class Session:
    csrf: str
    created: float
    last_used: float
    expires: float  # absolute deadline, ``clock()`` time


class Sessions:
    def __init__(self, lifetime: float = LIFETIME_S, idle: float = IDLE_S, capacity: int = CAPACITY,
                 clock: Callable[[], float] = time.time) -> None:
        self.lifetime = lifetime
        self.idle = idle
        self.capacity = capacity
        self.clock = clock
        self._by_digest: OrderedDict[bytes, Session] = OrderedDict()

    def open(self) -> tuple[str, Session]:
        """A new session: its id (for the cookie, never stored as such) and the session."""
        now = self.clock()
        token = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), now, now, now + self.lifetime)
        self._by_digest[_digest(token)] = session
        while len(self._by_digest) > self.capacity:
            self._by_digest.popitem(last=False)
        return token, session

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie value, its idle deadline renewed; None when unknown or expired."""
        if not token:
            return None
        key = _digest(token)
        session = self._by_digest.get(key)
        if session is None:
            return None
        now = self.clock()
        if now >= session.expires or now - session.last_used >= self.idle:
            del self._by_digest[key]
            return None
        session.last_used = now
        return session

    def close(self, token: str | None) -> None:
        if token:
            self._by_digest.pop(_digest(token), None)

    def __len__(self) -> int:
        return len(self._by_digest)


def csrf_matches(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(session.csrf.encode(), presented.encode("utf-8", "replace"))


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


class LoginThrottle:
    """Past ``limit`` wrong logins within ``window`` seconds, logins wait until the oldest leaves the window.

    One counter for the process, not per client: the gateway does not know who is behind a
    proxy, and guessing an admin key must stay slow whoever guesses. The admin API is unaffected.
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
