"""The faults the benchmark measures, and the gateway config that leads each into a healthy fallback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# Route limits, small enough that a run takes about two minutes; the goals scale with them.
FIRST_TOKEN_TIMEOUT = 0.5
STALL_TIMEOUT = 0.5
HEADERS_TIMEOUT = 1.0  # backends.*.timeout (first_token_timeout still bounds a stream's headers)
HEDGE_AFTER = 0.1
HEALTHY = "ok+gap-10"  # eight tokens, 10 ms apart
HEALTHY_ANSWER = 0.070  # seconds from its first token to its last: what a whole answer waits for on top

Where = Literal["none", "before", "mid"]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    fault: str  # the first candidate's fault (see tests/support/fault_upstream.py); "refused": a closed port
    what: str
    where: Where  # before the first token, mid-stream, or no fault at all
    hedge: bool = False
    # The route's second candidate is a healthy sibling on the faulty candidate's own backend,
    # and every answer must come from it (the fault is the model's, not the backend's).
    sibling: bool = False
    # False: the client asks for a whole answer, which the gateway streams from the upstream and assembles
    # (assemble_from_stream), so the stream deadlines apply to it too.
    stream: bool = True

    @property
    def budget(self) -> float:
        """Seconds the fault may cost before the client reads its next token (the goal, less 50 ms)."""
        if self.where == "mid":
            return STALL_TIMEOUT if "stall" in self.fault else 0.0
        if self.hedge:
            return HEDGE_AFTER
        before = FIRST_TOKEN_TIMEOUT if "slow" in self.fault else 0.0
        return before if self.stream else before + HEALTHY_ANSWER  # its first token comes with its last


SCENARIOS = [
    Scenario("healthy", HEALTHY, "no fault (baseline)", "none"),
    Scenario("refused", "refused", "connection refused (closed port)", "before"),
    Scenario("reset", "reset", "connection reset before any byte", "before"),
    Scenario("503", "status-503", "HTTP 503", "before"),
    Scenario("429", "status-429+retry-1", "HTTP 429, Retry-After: 1", "before"),
    Scenario("block", "block", "403 unsupported_country_region_territory", "before"),
    Scenario("malformed", "badjson", "first event is not JSON", "before"),
    Scenario("slow-headers", "slowheaders-10000", "no response headers for 10 s", "before"),
    Scenario("slow-first", "slowfirst-10000", "headers, then no token for 10 s", "before"),
    Scenario("slow-first-hedged", "slowfirst-10000", "the same, route with hedge_after = 0.1", "before", hedge=True),
    Scenario("stall", "stall-4+gap-10", "4 tokens, then silence (stall)", "mid"),
    Scenario("cut", "cut-4+gap-10", "4 tokens, then the body ends without [DONE]", "mid"),
    Scenario("reset-mid", "resetbody-4+gap-10", "4 tokens, then a TCP reset", "mid"),
    Scenario("error-event", "errorevent-4+gap-10", "4 tokens, then an error event", "mid"),
    Scenario("billing", "errfile-deepseek/402_insufficient_balance", "402 Insufficient Balance (DeepSeek's body)",
             "before"),
    Scenario("retired-model", "errfile-openai/404_model_not_found", "404 model_not_found (OpenAI's body)", "before"),
    Scenario("shared-backend", "status-429+retry-30", "429 on one model; its sibling on the same backend serves",
             "before", sibling=True),
    Scenario("hung-non-stream", "slowheaders-10000", "non-streamed request; no response headers for 10 s",
             "before", stream=False),
]

# "meets": breakers never open, cooldowns and probe intervals are a millisecond, so every request meets
# the fault and pays for it; "breakers": the defaults, so the fault is learnt and skipped.
MODES = ("meets", "breakers")


def gateway_config(upstream_url: str, refused_url: str, mode: str) -> dict[str, Any]:
    backends: dict[str, Any] = {}
    models: dict[str, Any] = {}
    routes: dict[str, Any] = {}
    for s in SCENARIOS:
        first, second = f"{s.name}-primary", f"{s.name}-fallback"
        for name, url in ((first, refused_url if s.fault == "refused" else upstream_url), (second, upstream_url)):
            # A whole answer is streamed from the upstream and assembled: the default of an HTTP backend.
            backends[name] = {"type": "openai", "base_url": url, "continuation": "prefix", "timeout": HEADERS_TIMEOUT}
        fault = HEALTHY if s.fault == "refused" else s.fault  # refused: the port is closed, the fault is moot
        models[first] = {"backend": first, "upstream": f"{fault}+id-{s.name}"}
        models[second] = {"backend": second, "upstream": f"{HEALTHY}+id-{s.name}-fallback"}
        candidates = [first, second]
        if s.sibling:
            models[sibling_of(s)] = {"backend": first, "upstream": f"{HEALTHY}+id-{s.name}-sibling"}
            candidates.insert(1, sibling_of(s))
        routes[s.name] = {
            "models": candidates,
            "first_token_timeout": FIRST_TOKEN_TIMEOUT,
            "stall_timeout": STALL_TIMEOUT,
            **({"hedge_after": HEDGE_AFTER} if s.hedge else {}),
        }
    gateway: dict[str, Any] = {"debug_headers": True}
    if mode == "meets":
        gateway["breakers"] = {"failures": 1_000_000, "error_rate": 1.0, "min_requests": 1_000_000,
                               "probe_interval": 0.001, "block_cooldown": 0.001, "auth_cooldown": 0.001,
                               "billing_cooldown": 0.001, "retired_cooldown": 0.001}
    return {"gateway": gateway, "backends": backends, "models": models, "routes": routes}


def sibling_of(s: Scenario) -> str:
    """The model name of a scenario's healthy sibling (``sibling`` scenarios)."""
    return f"{s.name}-sibling"


def to_toml(doc: dict[str, Any]) -> str:
    """Just enough TOML for the config above (tables of scalars and lists)."""
    out: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    def table(path: str, t: dict[str, Any]) -> None:
        scalars = {k: v for k, v in t.items() if not isinstance(v, dict)}
        if scalars or not t:
            out.append(f"[{path}]")
            out.extend(f'"{k}" = {value(v)}' for k, v in scalars.items())
            out.append("")
        for k, v in t.items():
            if isinstance(v, dict):
                table(f'{path}."{k}"' if path else f'"{k}"', v)

    for section, t in doc.items():
        table(section, t)
    return "\n".join(out)
