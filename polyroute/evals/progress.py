"""The run's progress bar (rich): items done, errors, cost so far, time left."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)


class RichProgress:
    """One bar per (model, suite); the cost column is the whole run's spend so far."""

    def __init__(self, console: Console | None = None) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("errors {task.fields[errors]}"),
            TextColumn("${task.fields[cost]:.4f}"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
        )
        self._task: TaskID | None = None
        self._errors = 0
        self.cost_usd = 0.0

    def begin(self, model: str, suite: str, total: int, done: int) -> None:
        self._errors = 0
        if self._task is None:
            self._bar.start()
        self._task = self._bar.add_task(f"{model} · {suite}", total=total, completed=done,
                                        errors=0, cost=self.cost_usd)

    def advance(self, *, failed: bool, cost_usd: float) -> None:
        self._errors += int(failed)
        self.cost_usd += cost_usd
        if self._task is not None:
            self._bar.update(self._task, advance=1, errors=self._errors, cost=self.cost_usd)

    def end(self) -> None:
        if self._task is not None:
            self._bar.refresh()

    def close(self) -> None:
        self._bar.stop()
