"""Whose a request's bad ending was: the client's (refused) or the gateway's (failed).

Every report of the ledger (``polyroute usage``, ``/admin/usage``, ``/v1/usage``, the
rollup, the console) counts a row by the one rule here, read from what the row keeps:
its status and its error code (``polyroute.finish.ending``).

    served    status < 400 and no error code
    refused   the client's own doing; the gateway answered as it should
              - a code of the error tree's ClientError branch (read from the tree, so a new
                client error counts here): authentication, permission,
                invalid request, unknown model, too large, no candidate fits the policy or the
                context, the key's or team's own rate limit (429 rate_limit_exceeded) or
                budget (402), ... (501 unsupported_transfer_encoding too: a client's coding)
              - client_closed: the client left (499, or a stream it stopped reading). It chose
                not to wait: counted as a failure, it would let a client with a short timeout
                raise the operator's error rate. A fleet slow enough to make clients leave
                shows in the percentiles of the requests answered and in its own timeouts.
              - any other 4xx but for the failures' codes below: the upstream's refusal of the
                request itself (AllAttemptsFailed of UpstreamRejected: every candidate said the
                request is wrong, a context too long, a parameter no candidate takes, a
                moderation block), answered with the upstream's code. The fleet worked; the
                client would get the same answer from the provider itself. (Where the catalog
                is wrong, say a context window too large, the row's attempts still say so.)
    failed    anything else: every candidate failed (all_backends_failed, 429 and 503 among
              them), a stream cut, a gateway stopping, an internal error, the store or the
              shared counters unreachable, any other 5xx

Latency percentiles are taken over the requests that were not refused: a refusal is
answered in microseconds (or, for a client that left, when the client chose), and would
only pull p50 down for a key that misbehaves.
"""

from __future__ import annotations

from polyroute.errors import AllAttemptsFailed, ClientError, QuotaStoreUnavailable, StoreUnavailable, UpstreamError
from polyroute.finish import CLIENT_CLOSED_CODE, SHUTDOWN


def _client_codes(cls: type[ClientError] = ClientError) -> set[str]:
    codes = {cls.code} if cls.code else set()
    for sub in cls.__subclasses__():
        codes |= _client_codes(sub)
    return codes


# The codes of the client's own errors: every ClientError's, so a new one counts as the client's.
CLIENT_CODES = frozenset({*_client_codes(), CLIENT_CLOSED_CODE})
# The codes of failures that are answered with a 4xx too (429 when every candidate was rate limited).
FAILURE_CODES = frozenset({
    str(AllAttemptsFailed.code), "stream_cut", "internal_error", SHUTDOWN, str(StoreUnavailable.code),
    str(QuotaStoreUnavailable.code), UpstreamError.type,
})


def refused(status: int, error: str | None) -> bool:
    """Whether a request ended for the client's own reasons (see the module's docstring)."""
    if error in CLIENT_CODES:
        return True
    return 400 <= status < 500 and error not in FAILURE_CODES


def failed(status: int, error: str | None) -> bool:
    """Whether the gateway or its upstreams could not answer a request (see the module's docstring)."""
    return (status >= 400 or bool(error)) and not refused(status, error)


def _quoted(codes: frozenset[str]) -> str:
    return ", ".join("'" + c.replace("'", "''") + "'" for c in sorted(codes))


def _ended_badly_sql(status: str, error: str) -> str:
    return f"({status} >= 400 OR COALESCE({error}, '') <> '')"


def refused_sql(status: str = "status", error: str = "error") -> str:
    """``refused`` as an SQL condition over a row's ``status`` and ``error`` columns (SQLite and PostgreSQL).

    A served row is told by its status and error alone before any list of codes is looked at: most rows
    are served, and the ledger's writer sums every row it writes into the rollup."""
    code = f"COALESCE({error}, '')"
    return (f"({_ended_badly_sql(status, error)} AND ({code} IN ({_quoted(CLIENT_CODES)}) "
            f"OR ({status} BETWEEN 400 AND 499 AND {code} NOT IN ({_quoted(FAILURE_CODES)}))))")


def failed_sql(status: str = "status", error: str = "error") -> str:
    """``failed`` as an SQL condition."""
    return f"({_ended_badly_sql(status, error)} AND NOT {refused_sql(status, error)})"
