"""What the adapters need of an upstream client: a pool that sends, a response that reads.

Two clients implement it: the home-made one (``polyroute.adapters.transport``, the
default) and one on aiohttp (``polyroute.adapters.aio_transport``, the ``aiohttp``
extra). Both raise the error classes of ``polyroute.adapters.transport``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self, timeout: float | None = None, limit: int | None = None) -> bytes: ...

    async def next(self, timeout: float | None = None) -> bytes | None: ...

    def iter_bytes(self, timeout: float | None = None) -> AsyncIterator[bytes]: ...

    def iter_lines(self, timeout: float | None = None) -> AsyncIterator[str]: ...

    def release(self) -> None: ...


class UpstreamPool(Protocol):
    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float | None
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...
