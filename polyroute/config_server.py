"""``[gateway]``'s keys for how the HTTP server holds its clients to time (``polyroute.server.http11``),
kept apart from ``polyroute.config`` so each file stays small; ``GatewayConfig`` takes them in by inheriting."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ClientTimeouts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # A request's head (request line and headers) must arrive whole within this many seconds of its
    # first byte, and its body within ``body_timeout`` of the end of the head; else 408 and close.
    header_timeout: float = Field(default=10.0, gt=0, le=3600)
    body_timeout: float = Field(default=60.0, gt=0, le=3600)
    # A client that has taken none of the bytes waiting for it for this many seconds has stopped reading:
    # its connection is closed, and a stream it was sent ends as one whose client left. The time runs
    # between two signs of progress, never over the whole answer, so a slow reader is not cut.
    send_timeout: float = Field(default=60.0, gt=0, le=3600)
    # On SIGTERM, answers in flight have this long to finish; streams still running then end with an error event.
    shutdown_grace: float = Field(default=10.0, ge=0, le=3600)
