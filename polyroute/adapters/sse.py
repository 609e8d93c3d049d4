"""Server-sent events, decoded as they arrive: bytes in, ``(event, data)`` pairs out.

A streamed answer passes every chunk through here, so this is a plain object fed
from the read loop, not a stack of async generators (bytes, then lines, then
events): each of those layers cost a resumption per chunk. Lines end with LF or
CRLF; ``data`` lines of one event are joined with newlines, comments (``:``) and
other fields are skipped, and an event is complete at the empty line after it.
A read of whole one-line ``data`` events, what upstreams almost always send, is
split on the empty lines at once.
"""

from __future__ import annotations


class SSEDecoder:
    def __init__(self) -> None:
        self._rest = b""  # a line not yet ended
        self._event = ""
        self._data: list[str] = []

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        """The events completed by ``data``."""
        if not (self._rest or self._data or self._event) and data.endswith(b"\n\n") and b"\r" not in data:
            fast = self._whole_data_events(data)
            if fast is not None:
                return fast
        lines = (self._rest + data if self._rest else data).split(b"\n")
        self._rest = lines.pop()
        out: list[tuple[str, str]] = []
        for raw in lines:
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if not raw:
                if self._data:
                    out.append((self._event or "message", "\n".join(self._data)))
                    self._data = []
                self._event = ""
                continue
            name, _, value = raw.partition(b":")
            if name == b"data":
                self._data.append(value.removeprefix(b" ").decode("utf-8", "replace"))
            elif name == b"event":
                self._event = value.removeprefix(b" ").decode("utf-8", "replace")
        return out

    @staticmethod
    def _whole_data_events(data: bytes) -> list[tuple[str, str]] | None:
        """What most reads carry, whole ``data: ...`` events of one line each; None for anything else."""
        out = []
        for part in data[:-2].split(b"\n\n"):
            if not part.startswith(b"data:") or b"\n" in part:
                return None
            out.append(("message", part[6:].decode("utf-8", "replace") if part[5:6] == b" "
                        else part[5:].decode("utf-8", "replace")))
        return out

    def end(self) -> list[tuple[str, str]]:
        """At the end of the body: an event left without its empty line still counts."""
        out = self.feed(b"\n\n") if self._rest or self._data else []
        self._rest = b""
        return out
