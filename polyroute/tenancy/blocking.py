"""``KeyStore`` for a store whose driver blocks (sqlite3, psycopg): each call runs in a worker thread.

A store implements the blocking ``*_now`` methods (the CLI calls them directly); this
base gives the event loop the ``KeyStore`` protocol over them.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod

from polyroute.tenancy.model import KeyRecord, TeamRecord


class BlockingKeyStore(ABC):
    @abstractmethod
    def version_now(self) -> int: ...

    @abstractmethod
    def add_key_now(self, r: KeyRecord) -> None:
        """Raises ``KeyError`` when the name is taken."""

    @abstractmethod
    def put_key_now(self, r: KeyRecord) -> None: ...

    @abstractmethod
    def keys_now(self, name: str | None = None) -> list[KeyRecord]: ...

    @abstractmethod
    def delete_key_now(self, name: str) -> bool: ...

    @abstractmethod
    def put_team_now(self, t: TeamRecord) -> None: ...

    @abstractmethod
    def teams_now(self, name: str | None = None) -> list[TeamRecord]: ...

    @abstractmethod
    def delete_team_now(self, name: str) -> bool: ...

    @abstractmethod
    def revoke_session_now(self, session_id: str, until: float, now: float) -> None:
        """Record a console logout until ``until`` (epoch seconds); drop records past their ``until``."""

    @abstractmethod
    def session_revoked_now(self, session_id: str) -> bool: ...

    async def version(self) -> int:
        return await asyncio.to_thread(self.version_now)

    async def add_key(self, record: KeyRecord) -> None:
        await asyncio.to_thread(self.add_key_now, record)

    async def put_key(self, record: KeyRecord) -> None:
        await asyncio.to_thread(self.put_key_now, record)

    async def key(self, name: str) -> KeyRecord | None:
        found = await asyncio.to_thread(self.keys_now, name)
        return found[0] if found else None

    async def keys(self) -> list[KeyRecord]:
        return await asyncio.to_thread(self.keys_now)

    async def delete_key(self, name: str) -> bool:
        return await asyncio.to_thread(self.delete_key_now, name)

    async def put_team(self, record: TeamRecord) -> None:
        await asyncio.to_thread(self.put_team_now, record)

    async def team(self, name: str) -> TeamRecord | None:
        found = await asyncio.to_thread(self.teams_now, name)
        return found[0] if found else None

    async def teams(self) -> list[TeamRecord]:
        return await asyncio.to_thread(self.teams_now)

    async def delete_team(self, name: str) -> bool:
        return await asyncio.to_thread(self.delete_team_now, name)

    async def revoke_session(self, session_id: str, until: float) -> None:
        await asyncio.to_thread(self.revoke_session_now, session_id, until, time.time())

    async def session_revoked(self, session_id: str) -> bool:
        return await asyncio.to_thread(self.session_revoked_now, session_id)
