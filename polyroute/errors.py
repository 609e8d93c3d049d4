"""The one error tree of polyroute.

Every failure a client can see is a ``PolyrouteError``. Each class knows the HTTP
status it maps to, the OpenAI ``type`` and ``code`` it reports, whether the same
backend may be tried again (``retryable``) and whether the gateway may move on to
another candidate (``may_fall_over``). An ``UpstreamError`` also knows its
``scope``: the narrowest thing it explains, the one model (``m``) or the whole
backend (``B``, account-wide by its own code); the breakers charge that scope.
Foreign exceptions (httpx, llama.cpp, JSON) are translated into this tree in
exactly one place per adapter. Errors are classified by status and structured
codes; only where a provider documents no code (an over-long prompt, Anthropic's
"credit balance is too low", DeepSeek's "Model Not Exist") does that adapter's
error reader look at the text.

    PolyrouteError
    ├── ConfigError                      bad config file (never an HTTP answer)
    ├── ClientError                      the caller's fault: 4xx, never retried
    │   ├── InvalidRequest               400  invalid JSON / schema, names the field
    │   ├── Unauthorized                 401  missing, wrong or revoked key
    │   ├── Forbidden                    403  key may not use this route
    │   ├── UnknownModel                 404  lists the names that exist
    │   ├── RequestTimeout               408  head or body not received in time
    │   ├── NotFound                     404  no such key or team (admin API), no such stored response
    │   ├── MethodNotAllowed             405
    │   ├── Conflict                     409  the name is taken (admin API)
    │   ├── BodyTooLarge                 413
    │   ├── HeadTooLarge                 431  request line and headers over the limit
    │   ├── UnsupportedEncoding          415  a Content-Encoding the gateway does not decode
    │   ├── UnsupportedTransfer          501  a transfer coding other than chunked
    │   ├── PolicyViolation              422  no candidate satisfies the policy
    │   │   └── ContextTooLong           400  context_length_exceeded: only the prompt's length stood in the way
    │   ├── BudgetExceeded               402  the key's or team's budget is spent (SDKs do not retry 402)
    │   └── RateLimitExceeded            429  the key's or team's rpm/tpm, with Retry-After and retry-after-ms
    ├── UpstreamError                    a backend failed; carries backend, model and scope (m/B)
    │   │                                        falls over; "no retry": not that backend again
    │   ├── UpstreamUnavailable          B  503  connection refused / reset / DNS / TLS
    │   ├── UpstreamTimeout              m  504  no headers, no first token, or a stall
    │   ├── UpstreamRateLimited          m  429  429, with Retry-After when given
    │   ├── UpstreamServerError          m  502  5xx
    │   ├── UpstreamBadResponse          m  502  malformed body or stream
    │   ├── UpstreamModelNotFound        m  502  404 model_not_found: retired or unknown id, no retry
    │   ├── UpstreamBlocked              B  503  403/451 region, sanction or policy block, no retry
    │   │                                        (m when the provider says it is the model's)
    │   ├── UpstreamAuthError            B  502  401/403 bad key, no retry
    │   ├── UpstreamBilling              B  503  402, quota or arrears: the account cannot pay, no retry
    │   ├── UpstreamRejected             -  400  from upstream: the client's own error (413 kept), no fall-over;
    │   │                                        content a provider's moderation flagged
    │   │   └── UpstreamContextExceeded  -  400  context length: move to a larger window
    │   └── StreamCut                    m  502  a stream ended or stalled after tokens were sent
    ├── AllAttemptsFailed                502/503/504, 429 when every one was rate limited (Retry-After and
    │                                        retry-after-ms: what is left of the soonest wait any gave):
    │                                        every candidate failed, each listed
    ├── StoreUnavailable                 503  the database of keys and the ledger cannot be reached
    └── QuotaStoreUnavailable            503  the shared counters (Redis) are unreachable and
                                              [store] on_redis_down refuses the key's request
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Scope = Literal["model", "backend"]


class PolyrouteError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None
    retryable: bool = False
    may_fall_over: bool = False

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, Any]:
        """The OpenAI error shape."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        return {}


class ConfigError(PolyrouteError):
    """A config file that cannot be used: says file, key and reason, for every problem found."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        where = ": ".join(p for p in (source, key) if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.key = key
        self.problems = [f"{key}: {message}" if key else message]

    @classmethod
    def of(cls, problems: list[str], *, source: str | None = None) -> ConfigError:
        """One error for several problems ('key: reason' each): one line each after the file."""
        if len(problems) == 1:
            key, sep, reason = problems[0].partition(": ")
            err = cls(reason, source=source, key=key) if sep else cls(key, source=source)
        else:
            lines = "".join(f"\n  {p}" for p in problems)
            err = cls(f"{len(problems)} problems:{lines}", source=source)
        err.problems = list(problems)
        return err


# --- the caller's fault ---------------------------------------------------------------


class ClientError(PolyrouteError):
    status = 400
    type = "invalid_request_error"


class InvalidRequest(ClientError):
    code = "invalid_request"


class Unauthorized(ClientError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(ClientError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class UnknownModel(ClientError):
    status = 404
    code = "model_not_found"


class RequestTimeout(ClientError):
    """A request's head or body did not arrive within its deadline (a slow or stalled client)."""

    status = 408
    code = "request_timeout"


class NotFound(ClientError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"


class Conflict(ClientError):
    status = 409
    code = "conflict"


class BodyTooLarge(ClientError):
    status = 413
    code = "request_too_large"


class UnsupportedEncoding(ClientError):
    """A request body in a content coding (gzip, ...) the gateway does not decode."""

    status = 415
    code = "unsupported_content_encoding"


class UnsupportedTransfer(ClientError):
    """A request in a transfer coding other than chunked."""

    status = 501
    code = "unsupported_transfer_encoding"


class HeadTooLarge(ClientError):
    status = 431
    code = "request_header_fields_too_large"


class PolicyViolation(ClientError):
    """No candidate of the route satisfies the policy; says why each was excluded."""

    status = 422
    code = "no_candidate_satisfies_policy"


class ContextTooLong(PolicyViolation):
    """Every candidate was left out for one reason only: the prompt (and max_tokens) exceed its context window."""

    status = 400
    code = "context_length_exceeded"

    def __init__(self, message: str, param: str = "messages") -> None:
        super().__init__(message, param=param)


class BudgetExceeded(ClientError):
    """A key or team has spent its budget for the period: says the budget, the spend and the reset."""

    status = 402
    type = "insufficient_quota"
    code = "budget_exceeded"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.limits: dict[str, str] = {}  # the x-ratelimit-* and budget headers, as an admitted answer has them

    def headers(self) -> dict[str, str]:
        return self.limits


class RateLimitExceeded(ClientError):
    """A key or team is over its requests or tokens per minute."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.retry_after = retry_after  # seconds until a request would be let in (not rounded: see retry_headers)
        self.limits: dict[str, str] = {}  # the x-ratelimit-* and budget headers, as an admitted answer has them

    def headers(self) -> dict[str, str]:
        return {**self.limits, **retry_headers(self.retry_after)}


def retry_headers(seconds: float) -> dict[str, str]:
    """When to try again: ``Retry-After`` in whole seconds, rounded up (HTTP's form), and ``retry-after-ms`` with
    the wait itself.

    OpenAI's SDKs and the Vercel AI SDK read ``retry-after-ms`` first, and wait as told only for less than a
    minute (openai-python for up to 60 s): a wait of 59.4 s rounded up to ``Retry-After: 60`` is past the Vercel
    SDK's and openai-node's range, and they fall back to a backoff of seconds that retries into the same refusal.
    """
    seconds = max(seconds, 0.001)
    return {"retry-after": str(math.ceil(seconds)), "retry-after-ms": str(math.ceil(seconds * 1000))}


class QuotaStoreUnavailable(PolyrouteError):
    """The counters that budgets and rate limits are checked against cannot be reached."""

    status = 503
    type = "server_error"
    code = "quota_store_unavailable"
    retryable = True

    def headers(self) -> dict[str, str]:
        return {"retry-after": "1"}  # one call a second tries the counters while they are down


# --- a backend failed -----------------------------------------------------------------


class UpstreamError(PolyrouteError):
    """A backend's failure. ``outcome`` is the short class name used in logs and headers."""

    status = 502
    type = "upstream_error"
    outcome = "error"
    retryable = True
    may_fall_over = True
    # The narrowest scope the failure explains: "model" (this model on this backend) or
    # "backend" (every model of it: the connection, or the account by its own code).
    scope: Scope = "model"
    # Usage the upstream reported with the failure (an answer it sent, then said it had cut short):
    # the attempt failed, but the provider billed it, and so is the request.
    usage: object = None

    def __init__(
        self,
        message: str,
        *,
        backend: str = "",
        model: str = "",
        upstream_status: int | None = None,
        code: str | None = None,
        scope: Scope | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.backend = backend
        self.model = model
        self.upstream_status = upstream_status
        if scope is not None:
            self.scope = scope

    @property
    def account_wide(self) -> bool:
        """The whole backend refuses us until someone acts (a key, a bill, a block): skip it for this request."""
        return self.scope == "backend" and not self.retryable

    def describe(self) -> str:
        status = f" HTTP {self.upstream_status}" if self.upstream_status else ""
        return f"{self.backend}/{self.model}: {self.outcome}{status}: {self.message}"


class UpstreamUnavailable(UpstreamError):
    status = 503
    outcome = "unavailable"
    scope = "backend"


class UpstreamTimeout(UpstreamError):
    status = 504
    outcome = "timeout"


class UpstreamRateLimited(UpstreamError):
    status = 429
    outcome = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        # When it was said: a wait passed on to the client later is what is left of it then.
        self.said_at = time.monotonic()


class UpstreamServerError(UpstreamError):
    outcome = "server_error"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        # A 503 that says when to come back (a model still loading, a provider shedding load): out until then.
        self.retry_after = retry_after


class UpstreamBadResponse(UpstreamError):
    outcome = "bad_response"


class UpstreamModelNotFound(UpstreamError):
    """The provider says the model does not exist (retired, renamed, mistyped): out for a long cooldown."""

    outcome = "model_not_found"
    retryable = False


class UpstreamBlocked(UpstreamError):
    """Region, sanction or policy block: the backend (or, when it says so, the model) is out for a long cooldown."""

    status = 503
    outcome = "blocked"
    retryable = False
    scope = "backend"


class UpstreamAuthError(UpstreamError):
    """The backend refused our key: another backend may still answer."""

    status = 502
    outcome = "auth_error"
    retryable = False
    scope = "backend"


class UpstreamBilling(UpstreamError):
    """The provider account cannot pay (balance, quota, arrears): every model of the backend is out until topped up."""

    status = 503
    outcome = "billing"
    retryable = False
    scope = "backend"


class UpstreamRejected(UpstreamError):
    """The upstream says the request itself is wrong: no other backend will differ."""

    status = 400
    type = "invalid_request_error"
    outcome = "rejected"
    retryable = False
    may_fall_over = False


class UpstreamParamRefused(UpstreamRejected):
    """This model refuses a parameter (or a combination of them) of a valid request that other models
    take: the next candidate may answer, and this one may without the parameter (``param``)."""

    outcome = "param_refused"
    may_fall_over = True

    def __init__(self, message: str, *, param: str | None = None, always: bool = False, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.param = param
        self.always = always  # whatever its value: remembered for later requests, not only dropped for this one


class UpstreamDeclined(UpstreamRejected):
    """A safety classifier declined the request before any output (Claude's ``stop_reason: "refusal"``), on a route
    whose ``on_refusal = "next"`` asks the next candidate, as Anthropic's own fallback does. Not the model's
    failure: its breaker is not charged."""

    outcome = "declined"
    code = "content_policy_violation"
    may_fall_over = True


class UpstreamContextExceeded(UpstreamRejected):
    outcome = "context_exceeded"
    code = "context_length_exceeded"
    may_fall_over = True


class StreamCut(UpstreamError):
    """A stream broke or stalled after some tokens had reached the client."""

    outcome = "stream_cut"

    def __init__(self, message: str, *, partial: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.partial = partial


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one candidate, as logged and reported."""

    backend: str
    model: str
    outcome: str  # "ok" or an UpstreamError.outcome
    latency_ms: float
    detail: str = ""
    # When it began (``time.monotonic()``), for traces that draw the attempts on a time line.
    started: float = field(default=0.0, compare=False, repr=False)


class AllAttemptsFailed(PolyrouteError):
    """Every candidate failed; the status follows the kind of the failures."""

    type = "upstream_error"
    code = "all_backends_failed"

    def __init__(self, message: str, *, attempts: list[Attempt], errors: list[UpstreamError]) -> None:
        self.attempts = attempts
        self.errors = errors
        detail = "; ".join(e.describe() for e in errors)
        super().__init__(f"{message}: {detail}" if detail else message)
        self.status = self._pick_status()
        self.retry_after: float | None = None
        if errors and all(isinstance(e, UpstreamRejected) for e in errors):
            # The upstream refused the request itself: the client has to fix it.
            self.status = errors[-1].status if 400 <= errors[-1].status < 500 else 400
            self.type = "invalid_request_error"
            self.code = errors[-1].code or "invalid_request"
            self.param = errors[-1].param  # the field the upstream named, where it named one
        elif self.status in (429, 503):
            # When the soonest of them may be tried again, where any said (a rate limit's Retry-After).
            # What is left of it now: the attempts after the one that said it took time too.
            now = time.monotonic()
            waits = [e.retry_after - (now - e.said_at) for e in errors
                     if isinstance(e, UpstreamRateLimited) and e.retry_after is not None]
            self.retry_after = max(min(waits), 0.0) if waits else None

    def _pick_status(self) -> int:
        if self.errors and all(isinstance(e, UpstreamTimeout) for e in self.errors):
            return 504
        if self.errors and all(isinstance(e, UpstreamRateLimited) for e in self.errors):
            return 429  # every candidate is rate limited: the client should wait, as for one provider
        transient = (UpstreamUnavailable, UpstreamBlocked, UpstreamRateLimited, UpstreamBilling)
        if self.errors and all(isinstance(e, transient) for e in self.errors):
            return 503
        return 502

    def headers(self) -> dict[str, str]:
        if self.errors and all(isinstance(e, _LASTING) for e in self.errors):
            # A refused key, an empty account, a region block, a retired model: none clears in the seconds an SDK
            # waits between its retries, so it is told not to (OpenAI's SDKs read x-should-retry first).
            return {"x-should-retry": "false"}
        if self.retry_after is None:
            return {}
        return retry_headers(self.retry_after)


_LASTING = (UpstreamAuthError, UpstreamBilling, UpstreamBlocked, UpstreamModelNotFound)


class StoreUnavailable(PolyrouteError):
    """The store (``[store] url``) cannot be reached: an admin or usage call fails; requests go on."""

    status = 503
    code = "store_unavailable"
    retryable = True

    def headers(self) -> dict[str, str]:
        return {"retry-after": "1"}
