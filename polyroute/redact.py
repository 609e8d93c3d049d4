"""Secrets out of whatever text leaves the gateway, and upstream claims within bounds.

An upstream may quote the key it was sent (in an error body, a streamed error
event, a proxy's complaint); whatever it says can become an error message, a
breaker's detail, a health report and a log line. ``UpstreamGuard`` is applied to
every upstream error once, where it enters the gateway's accounting
(``polyroute.attempts.as_upstream``): its message loses every secret the config
holds, and a ``Retry-After`` past ``[gateway.breakers] max_retry_after`` is
clamped (and logged). ``Redactor`` is also the last guard where text leaves the
process: the health report and the log handler (``polyroute.logs.guard``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlsplit

from polyroute.config import Config
from polyroute.errors import UpstreamError, UpstreamRateLimited

log = logging.getLogger("polyroute.failover")

REDACTED = "[redacted]"
# Shorter values are not secrets worth the name, and blanking them would garble every message.
MIN_SECRET = 4
# A run of this many characters of a key, quoted on its own, gives the key away (a provider's masked echo).
FRAGMENT = 12
# Runs of characters a key may hold, between the quotes, spaces and brackets that surround one in a message.
_RUN = re.compile(r"[^\s\"'`<>()\[\]{},;]" + f"{{{FRAGMENT},}}")


class Redactor:
    """Replaces each of a fixed set of secrets by ``[redacted]``; the longest first."""

    __slots__ = ("_bytes", "_secrets", "_windows")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        kept = {s for s in secrets if s and len(s) >= MIN_SECRET}
        self._secrets = tuple(sorted(kept, key=len, reverse=True))
        self._bytes = tuple(s.encode("utf-8") for s in self._secrets)
        # Every FRAGMENT-long window of every secret long enough for a part of it to stand apart from its
        # provider's prefix ("sk-proj-"), for ``thoroughly``.
        self._windows = frozenset(s[i:i + FRAGMENT] for s in self._secrets if len(s) >= 2 * FRAGMENT
                                  for i in range(len(s) - FRAGMENT + 1))

    @classmethod
    def from_config(cls, config: Config, env: Mapping[str, str] | None = None) -> Redactor:
        """Every upstream key and proxy credential the gateway holds (client keys are kept only hashed)."""
        env = os.environ if env is None else env
        found: list[str] = []
        for backend in config.backends.values():
            for secret in backend.secrets().values():
                value = secret.get()
                if value:
                    found += [value, *value.split(":", 1)[1:]]
        for name, value in env.items():
            if name.lower().endswith("_proxy") and "@" in value:
                found += _url_credentials(value)
        return cls(found)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def thoroughly(self, text: str, limit: int = 2000) -> str:
        """As calling it, cut to ``limit`` characters, and any run of ``FRAGMENT`` or more characters of a secret
        blanked too: an upstream that quotes the key it got masked at one end (``sk-...abcd****``) still gives
        most of it away. Linear in the text: only its runs of characters that could be part of a key are looked
        at, each against the set of every ``FRAGMENT``-long window of every secret."""
        text = self(text)[:limit]
        windows = self._windows
        if not windows:
            return text
        out, at = [], 0
        for run in _RUN.finditer(text):
            word = run.group()
            hits = [i for i in range(len(word) - FRAGMENT + 1) if word[i:i + FRAGMENT] in windows]
            if not hits:
                continue
            # From the first window that is a secret's to the end of the last one: the run's part that is key.
            start, end = run.start() + hits[0], run.start() + hits[-1] + FRAGMENT
            out += [text[at:start], REDACTED]
            at = end
        return "".join([*out, text[at:]]) if out else text

    def data(self, payload: bytes) -> bytes:
        for secret in self._bytes:
            if secret in payload:
                payload = payload.replace(secret, REDACTED.encode())
        return payload


def _url_credentials(url: str) -> list[str]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    user, password = parts.username, parts.password
    return [v for v in (user and password and f"{user}:{password}", password and unquote(password)) if v]


class UpstreamGuard:
    """What every upstream error goes through once: secrets out, Retry-After clamped."""

    __slots__ = ("max_retry_after", "redact")

    def __init__(self, redact: Redactor | None = None, max_retry_after: float = 300.0) -> None:
        self.redact = redact or Redactor()
        self.max_retry_after = max_retry_after

    @classmethod
    def from_config(cls, config: Config) -> UpstreamGuard:
        return cls(Redactor.from_config(config), config.gateway.breakers.max_retry_after)

    def __call__(self, err: UpstreamError) -> UpstreamError:
        if self.redact:
            # Every field an upstream wrote that a client, the ledger or the health page may show.
            message = self.redact.thoroughly(err.message)
            if message != err.message:
                err.message = message
                err.args = (message,)
            if err.code is not None:
                err.code = self.redact.thoroughly(err.code)
            if err.param is not None:
                err.param = self.redact.thoroughly(err.param)
        if isinstance(err, UpstreamRateLimited) and err.retry_after and err.retry_after > self.max_retry_after:
            log.warning(
                "backend %s asked to be left alone for %.0fs (Retry-After); clamped to %.0fs (max_retry_after)",
                err.backend, err.retry_after, self.max_retry_after,
            )
            err.retry_after = self.max_retry_after
        return err
