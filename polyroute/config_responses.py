"""``[store]``'s keys for stored Responses API responses (``polyroute.tenancy.responses``), kept apart
from ``polyroute.config`` so each file stays small; ``StoreConfig`` takes them in by inheriting."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ResponsesStoreKeys(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Stored responses (and what ``previous_response_id`` and ``item_reference`` can name) are kept this
    # many days, as OpenAI keeps them by default.
    responses_retention_days: float = Field(default=30, gt=0)
