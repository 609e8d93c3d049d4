"""Server-sent events, decoded as they arrive: bytes in, ``(event, data)`` pairs out.

A streamed answer passes every chunk through here, so this is a plain object fed
from the read loop, not a stack of async generators (bytes, then lines, then
events): each of those layers cost a resumption per chunk. Lines end with LF or
CRLF; ``data`` lines of one event are joined with newlines, comments (``:``) and
other fields are skipped, and an event is complete at the empty line after it.
A read of whole one-line ``data`` events, what upstreams almost always send, is
split on the empty lines at once.

An event is held until its empty line, so its size is capped (``max_event``): a
line that never ends, or ``data`` lines that never reach an empty line, raise
``EventTooLarge`` instead of growing without bound. The pieces of an unended line
are kept apart and joined once, when its end arrives, never re-copied per read.
"""

from __future__ import annotations

# The largest event held whole by default.
MAX_EVENT_BYTES = 1 << 20


class EventTooLarge(ValueError):
    """An event (or a line of one) past the decoder's cap."""


class SSEDecoder:
    def __init__(self, max_event: int = MAX_EVENT_BYTES) -> None:
        self._rest: list[bytes] = []  # the pieces of a line not yet ended
        self._rest_size = 0
        self._event = ""
        self._data: list[str] = []
        self._data_size = 0
        self.max_event = max_event

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        """The events completed by ``data``."""
        if not (self._rest or self._data or self._event) and data.endswith(b"\n\n") and b"\r" not in data:
            fast = self._whole_data_events(data)
            if fast is not None:
                return fast
        if b"\n" not in data:
            self._rest.append(data)
            self._rest_size += len(data)
            if self._rest_size + self._data_size > self.max_event:
                raise EventTooLarge(f"stream event over {self.max_event} bytes")
            return []
        if self._rest:
            self._rest.append(data)
            data = b"".join(self._rest)
            self._rest.clear()
        lines = data.split(b"\n")
        last = lines.pop()
        if last:
            self._rest.append(last)
        self._rest_size = len(last)
        out: list[tuple[str, str]] = []
        for raw in lines:
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if not raw:
                if self._data:
                    out.append((self._event or "message", "\n".join(self._data)))
                    self._data = []
                    self._data_size = 0
                self._event = ""
                continue
            name, _, value = raw.partition(b":")
            if name == b"data":
                self._data.append(value.removeprefix(b" ").decode("utf-8", "replace"))
                self._data_size += len(raw)
                if self._data_size > self.max_event:
                    raise EventTooLarge(f"stream event over {self.max_event} bytes")
            elif name == b"event":
                self._event = value.removeprefix(b" ").decode("utf-8", "replace")
        if self._rest_size + self._data_size > self.max_event:
            raise EventTooLarge(f"stream event over {self.max_event} bytes")
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
        self._rest.clear()
        self._rest_size = 0
        return out
