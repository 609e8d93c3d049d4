"""Forward proxies for the upstream client: which one a backend uses, and the CONNECT tunnel.

The choice follows the conventions curl, requests and Python's ``urllib`` share:
``HTTPS_PROXY`` for https origins, ``HTTP_PROXY`` for http ones, lowercase names
winning over uppercase, and ``NO_PROXY`` to go direct: a comma-separated list of
``*`` (everything), host names that match themselves and their subdomains (a
leading dot is ignored), IP addresses or CIDR ranges, each optionally with
``:port`` to match that port only. A backend's ``proxy`` key overrides the
environment, and ``proxy = "none"`` goes direct whatever it says.

Through a proxy, a plain-HTTP request is sent in absolute form (``POST http://host/path``);
an https origin is reached through a ``CONNECT`` tunnel, with TLS started on it. A
proxy's credentials (``http://user:pass@proxy:3128``) go only into the
``Proxy-Authorization`` header: messages name the proxy by host and port.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# The largest answer to a CONNECT a proxy may send before the tunnel opens.
_MAX_CONNECT_HEAD = 16 * 1024
DIRECT = "none"


class ProxyRefused(Exception):
    """The proxy would not open the tunnel, or did not answer as a proxy."""


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # the Proxy-Authorization value, when the URL carries credentials

    @classmethod
    def parse(cls, url: str, credentials: str | None = None) -> Proxy:
        """An ``http://[user:pass@]host[:port]`` proxy; ValueError for anything else.

        ``credentials`` ("user:password"), when given, replace those of the URL.
        """
        if "://" not in url:
            url = f"http://{url}"  # HTTPS_PROXY=proxy:3128 is common and means http
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"a proxy must be an http:// URL with a host (got a {parts.scheme!r} URL)")
        pair = credentials
        if pair is None and parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii") if pair else None
        return cls(parts.hostname, parts.port or 80, auth)

    @property
    def where(self) -> str:
        """How messages name the proxy: never with its credentials."""
        return f"{self.host}:{self.port}"


def env_proxies(env: Mapping[str, str]) -> dict[str, str]:
    """``{"https": url, "http": url, "no": "..."}`` from ``*_proxy`` variables; lowercase names win."""
    out: dict[str, str] = {}
    cgi = "REQUEST_METHOD" in env  # HTTP_PROXY may then be a request's Proxy header ("httpoxy")
    for lowercase in (False, True):
        for name, value in env.items():
            if name.lower().endswith("_proxy") and (name.islower() == lowercase) and value:
                if cgi and name == "HTTP_PROXY":
                    continue
                out[name.lower()[:-6]] = value
    return out


def proxy_for(
    base_url: str, override: str | None, env: Mapping[str, str], credentials: str | None = None
) -> Proxy | None:
    """The proxy requests to ``base_url`` go through, or None to connect directly."""
    if override is not None:
        return None if override == DIRECT else Proxy.parse(override, credentials)
    proxies = env_proxies(env)
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not host or bypassed(host, port, proxies.get("no", "")):
        return None
    url = proxies.get(parts.scheme)
    return Proxy.parse(url, credentials) if url else None


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` sends ``host:port`` direct."""
    host = host.lower().strip("[]")
    for entry in no_proxy.replace(" ", "").lower().split(","):
        if entry == "*":
            return True
        name, want_port = _entry_port(entry)
        if not name or (want_port is not None and want_port != port):
            continue
        name = name.lstrip(".")
        if host == name or host.endswith(f".{name}") or _in_network(host, name):
            return True
    return False


def _entry_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [::1]:8080
        name, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
        return name, int(port) if port.isdigit() else None
    name, sep, port = entry.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return entry, None


def _in_network(host: str, entry: str) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False


class _Tunnel(asyncio.Protocol):
    """The proxy's answer to CONNECT: read up to its blank line, then hand the transport over."""

    def __init__(self) -> None:
        self.answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.head = bytearray()

    def data_received(self, data: bytes) -> None:
        if self.answered.done():
            return
        self.head += data
        if b"\r\n\r\n" in self.head:
            self.answered.set_result(bytes(self.head))
        elif len(self.head) > _MAX_CONNECT_HEAD:
            self.answered.set_exception(ProxyRefused("the proxy's answer to CONNECT is too long"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_exception(ProxyRefused("the proxy closed the connection during CONNECT"))


async def open_tunnel(proxy: Proxy, host: str, port: int) -> asyncio.Transport:
    """A transport to ``host:port`` through ``proxy``, ready for TLS; ProxyRefused or OSError when not."""
    loop = asyncio.get_running_loop()
    transport, tunnel = await loop.create_connection(_Tunnel, proxy.host, proxy.port)
    target = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"host: {target}"]
    if proxy.authorization:
        lines.append(f"proxy-authorization: {proxy.authorization}")
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    try:
        head = await tunnel.answered
        status_line = head.split(b"\r\n", 1)[0].split()
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
        if status == 407:
            raise ProxyRefused(f"the proxy {proxy.where} wants credentials (407)")
        if not 200 <= status < 300:
            raise ProxyRefused(f"the proxy {proxy.where} refused CONNECT ({status or 'no status'})")
        if not head.endswith(b"\r\n\r\n"):
            raise ProxyRefused(f"the proxy {proxy.where} sent data before the tunnel opened")
    except BaseException:
        transport.close()
        raise
    return transport
