"""What a probe's result is called in plain words, and what the operator can do about it.

Each hint names the config key or the variable to change, and what is known from the
config and the catalog: the offers of the same family at other providers (a region
block), a catalog model id one typo away (a model the provider does not know).
``Hints`` words them for where the probe ran: ``polyroute probe`` (a longer wait is its
``--timeout``; a variable exported is read by the next run) or a running gateway
(``POST /admin/probe``: a variable is read when the gateway starts).
"""

from __future__ import annotations

from dataclasses import dataclass

from polyroute.catalog import Catalog
from polyroute.config import Config, HttpBackendConfig
from polyroute.config_problems import did_you_mean
from polyroute.fleet import ModelEntry

# A result (an outcome of the error tree, or the probe's own) in the words the table shows.
WORDS = {
    "ok": "ok",
    "skipped": "skipped",
    "not_started": "did not start",
    "auth_error": "key refused",
    "billing": "account cannot pay",
    "blocked": "region blocked",
    "model_not_found": "model not found",
    "rate_limited": "rate limited",
    "param_refused": "parameter refused",
    "rejected": "request refused",
    "context_exceeded": "context too long",
    "declined": "declined",
    "server_error": "server error",
    "bad_response": "bad response",
    "timeout": "timeout",
    "unavailable": "unreachable",
    "stream_cut": "answer cut",
}

_ACCEPTED = ("the key, the account and the model id were accepted; the model refused the probe's request "
             "itself (see the message)")


def words(result: str) -> str:
    return WORDS.get(result, result.replace("_", " "))


@dataclass(frozen=True, slots=True)
class Hints:
    """What to do about each result, for one config and catalog, worded for where the probe ran."""

    config: Config
    catalog: Catalog | None
    # How a longer wait is asked for besides the backend's timeout ("--timeout"); None: only the config.
    timeout_flag: str | None = "--timeout"
    # The models are asked by a running gateway, which reads its environment only when it starts.
    running: bool = False

    def skipped(self, why: str, backend: str) -> str:
        """For a model not asked: the variables to set, or the package to install."""
        bc = self.config.backends[backend]
        unset = [(key, s.ref.removeprefix("env:")) for key, s in bc.secrets().items() if not s.present]
        then = "restart the gateway, then probe again" if self.running else "then probe again"
        if unset:
            verb = "set" if self.running else "export"
            return "; ".join(f"{verb} {var}=... (backends.{backend}.{key})" for key, var in unset) + f", {then}"
        if bc.install:
            return f"run `{bc.install}`, {then}"
        return why

    def failed(self, result: str, entry: ModelEntry) -> str:
        """What to do about a failed probe of ``entry``."""
        config, catalog = self.config, self.catalog
        b = entry.backend
        bc = config.backends[b]
        http = bc if isinstance(bc, HttpBackendConfig) else None
        if result == "auth_error":
            if http is None or http.api_key is None:
                return f"backends.{b} sends no key: add api_key = \"env:VARIABLE\" with the provider's key"
            var = http.api_key.ref.removeprefix("env:")
            return f"check the key in {var} (backends.{b}.api_key): the provider refused it"
        if result == "billing":
            return (f"the key works, but the account cannot pay: top up the account behind backends.{b} or raise "
                    "its spending limit; until then every model of that backend fails over")
        if result == "blocked":
            return f"the provider does not serve this account or region: {_elsewhere(entry, http, catalog)}"
        if result == "model_not_found":
            said = f"models.{entry.name}.upstream" if config.models[entry.name].upstream else (
                f"models.{entry.name}.upstream (unset: the model's name is sent)")
            return f"check {said}: {entry.upstream!r} is not a model of this backend{_close_id(entry, http, catalog)}"
        if result == "rate_limited":
            return "the key and the model answer, but the account is over a rate limit now: probe again later"
        if result in ("param_refused", "rejected", "context_exceeded", "declined"):
            return _ACCEPTED
        if result == "server_error":
            return f"the provider failed on its side: probe again later; if it lasts, check backends.{b}.base_url"
        if result == "bad_response":
            return f"the answer is not of the {bc.type!r} wire format: check backends.{b}.type and base_url"
        if result == "timeout":
            raise_it = (f"raise {self.timeout_flag} (or backends.{b}.timeout)" if self.timeout_flag
                        else f"raise backends.{b}.timeout")
            if http is None:
                return f"{raise_it}: an in-process model on a busy machine may need longer"
            return f"{raise_it}, or check that {http.base_url} is up"
        if result == "unavailable":
            where = f"{http.base_url}" if http is not None else f"backends.{b}"
            return f"cannot connect to {where}: check backends.{b}.base_url, the network and any proxy"
        if result == "not_started":
            return f"the backend could not start: check backends.{b}"
        return "see the message"


def _provider_offers(http: HttpBackendConfig | None, catalog: Catalog) -> list[str]:
    """The model ids the catalog lists at this backend's provider (by its URL or its ``provider``)."""
    if http is None:
        return []
    provider = (http.provider or "").lower()
    return [o.model for _, o in catalog.offers()
            if o.base_url.rstrip("/") == http.base_url or (provider and o.provider.lower() == provider)]


def _close_id(entry: ModelEntry, http: HttpBackendConfig | None, catalog: Catalog | None) -> str:
    if catalog is None:
        return ""
    known = _provider_offers(http, catalog) or [o.model for _, o in catalog.offers()]
    return did_you_mean(entry.upstream, set(known))


def _elsewhere(entry: ModelEntry, http: HttpBackendConfig | None, catalog: Catalog | None) -> str:
    """Other providers of the same family, with the variable each one's key goes in."""
    fam = catalog.get(entry.family) if catalog is not None and entry.family else None
    here = (http.provider or "").lower() if http is not None else ""
    base = http.base_url if http is not None else ""
    others = [o for o in (fam.offers if fam else []) if o.provider.lower() != here and o.base_url.rstrip("/") != base]
    if not others:
        return ("serve this model from another provider, or reach this one from a region it serves "
                f"(backends.{entry.backend}.proxy)")
    listed = ", ".join(f"{o.provider} ({o.key_env}, model {o.model!r})" for o in others)
    return f"use another offer of {entry.family}: {listed}"
