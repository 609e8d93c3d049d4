"""Router files read again without a restart: on ``SIGHUP``, or when a poll sees one changed.

Every ``poll`` seconds (``[gateway] router_poll``; 0: never) a task stats each router file in a thread (its modification
time, size and inode: a file replaced by a rename counts as changed). A changed file
is loaded in a thread too, and swapped into every "quality" strategy that reads it
with one assignment, so a decision under way finishes on the model it began with and
the event loop never waits for a file. ``SIGHUP`` loads every file at once, changed
or not. A file that fails to load is logged and the model in use is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from polyroute.errors import PolyrouteError
from polyroute.quality.features import Embedder
from polyroute.quality.scorer import Scorer

if TYPE_CHECKING:
    from polyroute.routing.quality import Quality

log = logging.getLogger("polyroute.quality")

POLL_S = 1.0

_Stamp = tuple[int, int, int] | None


def stamp(path: Path) -> _Stamp:
    """What tells a changed file: (mtime in ns, size, inode); None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class RouterWatch:
    def __init__(self, strategies: Iterable[Quality], embedder: Embedder, poll: float = POLL_S) -> None:
        self.files: dict[Path, list[Quality]] = {}
        for q in strategies:
            self.files.setdefault(q.path, []).append(q)
        self.embedder = embedder
        self.poll = poll
        self.stamps: dict[Path, _Stamp] = {p: stamp(p) for p in self.files}
        self.reloads = 0  # files swapped in since start
        self._task: asyncio.Task[None] | None = None
        self._busy = asyncio.Lock()

    def start(self) -> None:
        if self._task is None and self.poll > 0:
            self._task = asyncio.get_running_loop().create_task(self._poll_forever())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def reload(self) -> None:
        """Load every file again now (from the event loop's thread: the SIGHUP handler)."""
        asyncio.get_running_loop().create_task(self.check(force=True))

    async def check(self, force: bool = False) -> list[Path]:
        """Load the files that changed (every file with ``force``); the ones swapped in."""
        async with self._busy:
            swapped = []
            for path, users in self.files.items():
                now = await asyncio.to_thread(stamp, path)
                if now is None or (now == self.stamps[path] and not force):
                    continue
                try:
                    scorer = await asyncio.to_thread(Scorer.load, path, self.embedder)
                except PolyrouteError as exc:
                    log.error("router %s changed but cannot be loaded; keeping the one in use: %s", path, exc.message)
                    self.stamps[path] = now  # said once, not at every poll
                    continue
                for q in users:
                    q.scorer = scorer
                self.stamps[path] = now
                self.reloads += 1
                swapped.append(path)
                log.info("router %s loaded again: heads %s", path, ", ".join(scorer.columns))
                for q in users:
                    if missing := q.headless(scorer):  # as config check says of the file at start
                        log.warning("router %s has no head for %s of route %s: those models get no prediction, so "
                                    "never reach the target and come after the best-predicted model; train it with a "
                                    "head for each (router train --router BASE keeps the base's heads)",
                                    path, ", ".join(missing), q.route)
            return swapped

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            try:
                await self.check()
            except Exception:
                log.exception("checking router files failed")
