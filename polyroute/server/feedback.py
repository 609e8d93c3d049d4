"""``POST /v1/feedback``: how well a request was answered, as the application judged it.

The body is ``{"id": ID, "score": 0..1}``. ``ID`` is the answer's own ``id`` (the
``id`` of the chat completion) or the gateway's request id (``x-polyroute-request-id``).
The request must have gone through a ``strategy = "quality"`` route, whose decision
was recorded, and must have been made with the same key as the feedback; a request
of another key is answered as if it did not exist. Feedback given again replaces the
earlier score. ``polyroute router train --from-feedback`` learns from it.
"""

from __future__ import annotations

import math

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from polyroute.errors import InvalidRequest, NotFound, PolyrouteError
from polyroute.gateway import Gateway
from polyroute.server.answers import Reply
from polyroute.server.dispatch import request_key
from polyroute.server.errors import error_response, from_validation
from polyroute.server.http11 import Request


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(min_length=1, max_length=256)
    score: float = Field(ge=0, le=1)

    @field_validator("score", mode="before")
    @classmethod
    def _number(cls, v: object) -> object:
        # Strict mode takes an int for a float; True and False are not scores.
        if isinstance(v, bool):
            raise ValueError("must be a number from 0 to 1")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("must be a number from 0 to 1")
        return float(v) if isinstance(v, int) else v


class FeedbackEndpoint:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def handle(self, request: Request) -> Reply:
        try:
            principal = self.gateway.keys.authenticate(
                request_key(request))
            body = parse(request.body)
            log = self.gateway.decisions
            owner = None if log is None else await log.owner(body.id)
            if log is None or owner is None or owner.key != principal.key:
                raise NotFound(f"No routed request has the id {body.id!r} (feedback is taken on requests a "
                               "strategy = \"quality\" route decided, from the key that made them).", param="id")
            await log.give(owner, body.score)
        except PolyrouteError as exc:
            return error_response(exc)
        return Reply(orjson.dumps({"object": "feedback", "id": body.id, "request_id": owner.request_id,
                                   "score": body.score}))


def parse(raw: bytes) -> FeedbackBody:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body is not valid JSON: send {\"id\": ..., \"score\": 0..1}.") from None
    if not isinstance(doc, dict):
        raise InvalidRequest("The body must be a JSON object: {\"id\": ..., \"score\": 0..1}.")
    try:
        return FeedbackBody.model_validate(doc)
    except ValidationError as exc:
        raise from_validation(exc) from None
