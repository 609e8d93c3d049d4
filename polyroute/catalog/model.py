"""The model catalog: which families exist, who makes them, what they cost and where.

The data lives in ``families.toml`` next to this module and ships with the
package. It is read once by whoever needs it (the gateway at start, the
``polyroute models`` command) and the resulting ``Catalog`` is handed around;
nothing here is cached at module level.

A *family* is one model as its maker publishes it (say DeepSeek V3.x). An
*offer* is one place to call it: a provider, its wire format, base URL, model id,
the environment variable that holds the key, and the list price per million
tokens with where and when that price was read.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from polyroute.config import config_error
from polyroute.errors import ConfigError

# "embeddings": the family turns text into vectors (POST /v1/embeddings) and does not chat.
Capability = Literal["tools", "json_mode", "vision", "reasoning", "embeddings"]
Wire = Literal["openai", "anthropic"]
# How a provider can carry on from a partial assistant message (mid-stream rescue):
# "prefix" = an assistant message flagged "prefix": true (DeepSeek's beta endpoint),
# "partial" = the same message flagged "partial": true (Moonshot's Kimi API),
# "continue_final_message" = vLLM's flag, "prefill" = a trailing assistant turn (Anthropic).
Continuation = Literal["prefix", "partial", "continue_final_message", "prefill", "none"]

SHIPPED_FILE = "families.toml"

# Lower-case words joined by single hyphens. No dots: a dot in a TOML table name
# splits the key ("families.glm-4.6" would be a table "glm-4" holding "6").
_FAMILY_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_ENV_VAR = re.compile(r"^[A-Z][A-Z0-9_]*$")
# One stretch of the day in UTC, "HH:MM-HH:MM", start before end ("24:00" ends a day).
_HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$")


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Offer(_Strict):
    """One hosted place to call a family, with its list price."""

    provider: str = Field(min_length=1)
    wire: Wire
    base_url: str
    model: str = Field(min_length=1)
    key_env: str
    # List price (the peak rate where a provider has two), USD per million tokens;
    # input means prompt tokens that miss the provider's cache.
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    # Cheaper rates outside the peak hours, for providers that bill by time of day.
    off_peak_input_per_mtok: float | None = Field(default=None, ge=0)
    off_peak_output_per_mtok: float | None = Field(default=None, ge=0)
    peak_hours_utc: list[str] | None = None
    peak_weekdays_only: bool = False
    price_source: str
    price_date: dt.date
    continuation: Continuation = "none"
    # Some providers serve continuation from a different endpoint (DeepSeek's /beta).
    continuation_base_url: str | None = None
    note: str | None = None

    @field_validator("base_url", "price_source", "continuation_base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else _http_url(v)

    @field_validator("key_env")
    @classmethod
    def _env(cls, v: str) -> str:
        if not _ENV_VAR.match(v):
            raise ValueError(f"must be an environment variable name like OPENAI_API_KEY, got {v!r}")
        return v

    @field_validator("peak_hours_utc")
    @classmethod
    def _hours(cls, v: list[str] | None) -> list[str] | None:
        for span in v or []:
            m = _HOURS.match(span)
            if not m or (int(m[1]), int(m[2])) >= (int(m[3]), int(m[4])):
                raise ValueError(f"peak hours are written 'HH:MM-HH:MM' in UTC, start before end, got {span!r}")
        return v

    @model_validator(mode="after")
    def _off_peak(self) -> Offer:
        off_in, off_out = self.off_peak_input_per_mtok, self.off_peak_output_per_mtok
        if (off_in is None) != (off_out is None):
            raise ValueError("give both off_peak_input_per_mtok and off_peak_output_per_mtok, or neither")
        if (off_in is not None) != bool(self.peak_hours_utc):
            raise ValueError("off-peak prices and peak_hours_utc go together: give both or neither")
        if off_in is not None and off_out is not None and (
            off_in > self.input_per_mtok or off_out > self.output_per_mtok
        ):
            raise ValueError("an off-peak price is higher than the list (peak) price")
        return self

    def mean_price(self) -> float:
        """Average of input and output list price per million tokens: the one number to rank by.

        The list price is the peak rate, so a route never looks cheaper than it can be.
        """
        return (self.input_per_mtok + self.output_per_mtok) / 2

    def is_peak(self, at: dt.datetime) -> bool:
        """Whether ``at`` (an aware datetime) falls in the offer's peak hours; False without any."""
        if not self.peak_hours_utc:
            return False
        utc = at.astimezone(dt.UTC)
        if self.peak_weekdays_only and utc.weekday() >= 5:
            return False
        minute = utc.hour * 60 + utc.minute
        for span in self.peak_hours_utc:
            start, _, end = span.partition("-")
            if _minutes(start) <= minute < _minutes(end):
                return True
        return False

    def price_at(self, at: dt.datetime) -> tuple[float, float]:
        """(input, output) USD per million tokens billed at ``at``: off-peak rates outside peak hours."""
        if self.peak_hours_utc and not self.is_peak(at):
            assert self.off_peak_input_per_mtok is not None and self.off_peak_output_per_mtok is not None
            return (self.off_peak_input_per_mtok, self.off_peak_output_per_mtok)
        return (self.input_per_mtok, self.output_per_mtok)

    def age_days(self, today: dt.date) -> int:
        """Days since the price was read."""
        return (today - self.price_date).days


def _minutes(hhmm: str) -> int:
    hours, _, minutes = hhmm.partition(":")
    return int(hours) * 60 + int(minutes)


class Family(_Strict):
    """One model family as its maker publishes it, and the offers that serve it."""

    id: str
    name: str = Field(min_length=1)
    organisation: str = Field(min_length=1)
    country: str
    licence: str = Field(min_length=1)
    open_weights: bool
    context_window: int = Field(ge=1)
    capabilities: list[Capability] = Field(default_factory=list)
    local: bool = False
    offers: list[Offer] = Field(default_factory=list)
    note: str | None = None
    # An embedding family's vector length when a request asks for no ``dimensions``: vectors of one family and one
    # length share a space, which is what lets a request fall over between its offers (polyroute.embeddings).
    dimensions: int | None = Field(default=None, ge=1)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _FAMILY_ID.match(v):
            raise ValueError(f"must be kebab-case (lower-case words joined by '-'), got {v!r}")
        return v

    @field_validator("country")
    @classmethod
    def _country(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Z]{2}", v):
            raise ValueError(f"must be an ISO-3166 alpha-2 code in capitals like 'CN' or 'US', got {v!r}")
        return v

    @field_validator("capabilities")
    @classmethod
    def _unique(cls, v: list[Capability]) -> list[Capability]:
        if len(set(v)) != len(v):
            raise ValueError("lists a capability twice")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Family:
        if not self.local and not self.offers:
            raise ValueError("a family that is not local needs at least one offer")
        if self.licence == "proprietary" and self.open_weights:
            raise ValueError("a proprietary licence cannot have open weights")
        if ("embeddings" in self.capabilities) != (self.dimensions is not None):
            raise ValueError("an embedding family (capability \"embeddings\") says its vectors' length in dimensions; "
                             "no other family has dimensions")
        if "embeddings" in self.capabilities and len(self.capabilities) > 1:
            raise ValueError("an embedding family has the one capability \"embeddings\": it does not chat")
        return self

    @property
    def embeds(self) -> bool:
        return "embeddings" in self.capabilities

    def cheapest_offer(self) -> Offer | None:
        """The offer with the lowest mean price; the first listed wins a tie."""
        return min(self.offers, key=Offer.mean_price, default=None)

    def price(self) -> tuple[float, float]:
        """(input, output) USD per million tokens of the cheapest offer; (0, 0) when local."""
        offer = self.cheapest_offer()
        if self.local or offer is None:
            return (0.0, 0.0)
        return (offer.input_per_mtok, offer.output_per_mtok)

    def mean_price(self) -> float:
        inp, out = self.price()
        return (inp + out) / 2

    def offers_with_keys(self, env: Mapping[str, str]) -> list[Offer]:
        """Offers whose key variable is set (to something non-empty) in ``env``."""
        return [o for o in self.offers if env.get(o.key_env)]

    def matches_origin(self, origin: str) -> bool:
        """Country code, or a part of the organisation's name, case-insensitive.

        Two letters are read as a country code only, so "us" does not match every
        organisation whose name happens to contain those letters.
        """
        wanted = origin.strip().casefold()
        if not wanted:
            return False
        if wanted == self.country.casefold():
            return True
        return len(wanted) > 2 and wanted in self.organisation.casefold()


class Catalog(_Strict):
    """Every family, keyed by id, in the order of the file."""

    families: dict[str, Family]
    source: str = "<memory>"

    @model_validator(mode="before")
    @classmethod
    def _ids_from_keys(cls, data: Any) -> Any:
        # The table key *is* the id; writing it twice in the file would only invite drift.
        if not isinstance(data, dict) or not isinstance(data.get("families"), dict):
            return data
        families: dict[str, Any] = {}
        for key, table in data["families"].items():
            if isinstance(table, dict) and "id" not in table:
                table = {"id": key, **table}
            families[key] = table
        return {**data, "families": families}

    @model_validator(mode="after")
    def _keys_match_ids(self) -> Catalog:
        problems: list[str] = []
        seen: dict[tuple[str, str], str] = {}
        for key, family in self.families.items():
            if family.id != key:
                problems.append(f"families.{key}: id {family.id!r} differs from the table key")
            for i, offer in enumerate(family.offers):
                where = f"families.{key}.offers.{i}"
                first = seen.setdefault((offer.provider, offer.model), where)
                if first != where:
                    problems.append(f"{where}: provider {offer.provider!r} and model {offer.model!r} "
                                    f"are already offered at {first}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def offers(self) -> list[tuple[Family, Offer]]:
        """Every hosted offer with its family, in file order."""
        return [(f, o) for f in self.families.values() for o in f.offers]

    def stale(self, days: int, today: dt.date) -> list[tuple[Family, Offer]]:
        """Offers whose price was read more than ``days`` days before ``today``, oldest first."""
        old = [(f, o) for f, o in self.offers() if o.age_days(today) > days]
        return sorted(old, key=lambda fo: fo[1].price_date)

    def get(self, family_id: str) -> Family | None:
        return self.families.get(family_id)

    def filter(
        self,
        *,
        open_weights: bool | None = None,
        origin: str | None = None,
        max_price: float | None = None,
        local: bool | None = None,
    ) -> list[Family]:
        """Families passing every given test; ``None`` means "don't care".

        ``max_price`` bounds the mean of input and output price per million tokens of
        the family's cheapest offer (a local family costs 0).
        """
        out: list[Family] = []
        for family in self.families.values():
            if open_weights is not None and family.open_weights != open_weights:
                continue
            if origin is not None and not family.matches_origin(origin):
                continue
            if max_price is not None and family.mean_price() > max_price:
                continue
            if local is not None and family.local != local:
                continue
            out.append(family)
        return out


def parse_catalog(raw: Mapping[str, Any], *, source: str = "<memory>") -> Catalog:
    """Validate a catalog mapping; raise ConfigError naming source, key and reason."""
    if "source" in raw:  # set by the loader; a file must not pass itself off as another
        raise ConfigError("unknown key", source=source, key="source")
    try:
        return Catalog.model_validate({**raw, "source": source})
    except ValidationError as exc:
        raise config_error(exc, source, Catalog) from None


def load_catalog(path: Path | None = None) -> Catalog:
    """Read the catalog shipped with polyroute, or the one at ``path``."""
    if path is None:
        resource = resources.files("polyroute.catalog").joinpath(SHIPPED_FILE)
        source = f"polyroute/catalog/{SHIPPED_FILE}"
        try:
            text = resource.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the shipped catalog: {exc}", source=source) from None
    else:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read catalog file: {exc.strerror}", source=source) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=source) from None
    return parse_catalog(raw, source=source)
