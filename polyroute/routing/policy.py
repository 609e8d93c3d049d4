"""Policies: which models a request may reach at all, whatever the strategy or failover.

A request's *effective* policy is every policy that applies to it at once (the
key's, the route's and one named in ``x-polyroute-policy``); each constraint
takes the stricter side, so naming another policy can only narrow:

- ``locality = "local"`` anywhere: local backends only;
- ``origins_allow``: the model must match at least one entry of *each* list;
- ``origins_deny``: no entry of any list may match;
- ``licences``: the licence must be in every list (case-insensitive ids);
- ``open_weights = true`` anywhere: open weights only (``false`` asks nothing);
- ``max_price_per_mtok``: the lowest cap, compared with the mean of the model's
  input and output price per million tokens (as ``polyroute models --max-price``);
- ``min_context``: the highest floor.

An origin entry of two letters is an ISO country code (``"CN"``, ``"US"``);
longer, a case-insensitive part of the organisation's name (``"openai"``).

A model whose fact is unknown (no catalog family, and not set in the config)
fails closed: a constraint that needs the fact excludes it, and says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from polyroute.catalog.model import Family
from polyroute.config import PolicyConfig
from polyroute.config_problems import did_you_mean
from polyroute.fleet import ModelEntry


def origin_matches(term: str, organisation: str, country: str) -> bool:
    wanted = term.strip().casefold()
    if len(wanted) == 2:
        return wanted == country.casefold()
    return len(wanted) > 2 and wanted in organisation.casefold()


def _listing(items: Sequence[str]) -> str:
    return "[" + ", ".join(items) + "]"


@dataclass(frozen=True, slots=True)
class Policy:
    """The effective policy of a request. Each constraint remembers which named policy set it."""

    names: tuple[str, ...] = ()
    local_by: str | None = None
    allow: tuple[tuple[str, tuple[str, ...]], ...] = ()
    deny: tuple[tuple[str, tuple[str, ...]], ...] = ()
    licences: tuple[tuple[str, tuple[str, ...]], ...] = ()
    open_weights_by: str | None = None
    max_price: tuple[float, str] | None = None
    min_context: tuple[int, str] | None = None

    @classmethod
    def combine(cls, named: Sequence[tuple[str, PolicyConfig]]) -> Policy:
        local_by = next((n for n, p in named if p.locality == "local"), None)
        open_by = next((n for n, p in named if p.open_weights), None)
        prices = [(p.max_price_per_mtok, n) for n, p in named if p.max_price_per_mtok is not None]
        floors = [(p.min_context, n) for n, p in named if p.min_context is not None]
        return cls(
            names=tuple(n for n, _ in named),
            local_by=local_by,
            allow=tuple((n, tuple(p.origins_allow)) for n, p in named if p.origins_allow is not None),
            deny=tuple((n, tuple(p.origins_deny)) for n, p in named if p.origins_deny),
            licences=tuple((n, tuple(p.licences)) for n, p in named if p.licences is not None),
            open_weights_by=open_by,
            max_price=min(prices, key=lambda t: t[0]) if prices else None,
            min_context=max(floors, key=lambda t: t[0]) if floors else None,
        )

    @property
    def label(self) -> str | None:
        return " + ".join(self.names) if self.names else None

    def exclusions(self, entry: ModelEntry) -> list[str]:
        """Every reason this policy excludes ``entry``; empty when it qualifies."""
        out: list[str] = []
        if self.local_by is not None and entry.locality != "local":
            out.append(f"backend '{entry.backend}' is {entry.locality}; policy '{self.local_by}' "
                       f"allows local backends only")
        out += self._origin_reasons(entry)
        out += self._licence_reasons(entry)
        if self.open_weights_by is not None and entry.open_weights is not True:
            what = "weights unknown (no catalog family)" if entry.open_weights is None else "weights are not open"
            out.append(f"{what}; policy '{self.open_weights_by}' requires open weights")
        out += self._price_reasons(entry)
        if self.min_context is not None:
            floor, by = self.min_context
            if entry.context_window is None:
                out.append(f"context window unknown (no catalog family); policy '{by}' needs min_context {floor}")
            elif entry.context_window < floor:
                out.append(f"context window {entry.context_window} is under min_context {floor} of policy '{by}'")
        return out

    def _origin_reasons(self, entry: ModelEntry) -> list[str]:
        if not self.allow and not self.deny:
            return []
        org, cc = entry.organisation, entry.country
        if org is None or cc is None:
            by = ", ".join(sorted({n for n, _ in (*self.allow, *self.deny)}))
            return [f"origin unknown (no catalog family); origin rules of policy '{by}' cannot be checked"]
        out: list[str] = []
        for by, terms in self.allow:
            if not any(origin_matches(t, org, cc) for t in terms):
                out.append(f"origin {org}, {cc} is not in origins_allow {_listing(terms)} of policy '{by}'")
        for by, terms in self.deny:
            hit = [t for t in terms if origin_matches(t, org, cc)]
            if hit:
                out.append(f"origin {org}, {cc} matches origins_deny {_listing(hit)} of policy '{by}'")
        return out

    def _licence_reasons(self, entry: ModelEntry) -> list[str]:
        out: list[str] = []
        for by, allowed in self.licences:
            if entry.licence is None:
                out.append(f"licence unknown (no catalog family); policy '{by}' allows only {_listing(allowed)}")
            elif entry.licence.casefold() not in {a.casefold() for a in allowed}:
                out.append(f"licence {entry.licence} is not in licences {_listing(allowed)} of policy '{by}'")
        return out

    def _price_reasons(self, entry: ModelEntry) -> list[str]:
        if self.max_price is None:
            return []
        cap, by = self.max_price
        if not entry.price_known:
            return [f"price unknown (no catalog family, no price in the config); policy '{by}' caps "
                    f"max_price_per_mtok at {cap:g}"]
        mean = (entry.input_per_mtok + entry.output_per_mtok) / 2
        if mean <= cap:
            return []
        return [f"price {mean:g} USD/Mtok (mean of input {entry.input_per_mtok:g} and output "
                f"{entry.output_per_mtok:g}) is over max_price_per_mtok {cap:g} of policy '{by}'"]


def policy_cautions(policies: Mapping[str, PolicyConfig], families: Iterable[Family]) -> list[str]:
    """Policy terms that match no family of the catalog, as ``key: what will happen``. An allowed origin or
    licence that nothing matches admits nothing; a denied one denies nothing, which is said only when it is one
    typo away from a known organisation (a deny list may name an organisation the catalog does not have yet)."""
    fams = list(families)
    orgs = sorted({f.organisation for f in fams})
    countries = sorted({f.country.upper() for f in fams})
    licences = sorted({f.licence for f in fams})
    out: list[str] = []
    for name, p in policies.items():
        for term in p.origins_allow or ():
            if len(term.strip()) == 2 and term.strip().upper() not in countries:
                out.append(f"policies.{name}.origins_allow: {term!r} is the country of no family of the catalog "
                           f"(known: {', '.join(countries)}): it admits no model")
            elif len(term.strip()) != 2 and not any(origin_matches(term, org, "") for org in orgs):
                out.append(f"policies.{name}.origins_allow: {term!r} matches no organisation of the catalog"
                           f"{did_you_mean(term.strip(), set(orgs), fold=True)} (known: {', '.join(orgs)}): "
                           "it admits no model")
        for term in p.origins_deny:
            unmatched = len(term.strip()) > 2 and not any(origin_matches(term, org, "") for org in orgs)
            if unmatched and (hint := did_you_mean(term.strip(), set(orgs), fold=True)):
                out.append(f"policies.{name}.origins_deny: {term!r} matches no organisation of the catalog{hint}: "
                           "it denies nothing")
        folded = {lic.casefold() for lic in licences}
        for lic in p.licences or ():
            if lic.casefold() not in folded:
                out.append(f"policies.{name}.licences: {lic!r} is no licence of the catalog"
                           f"{did_you_mean(lic, set(licences), fold=True)} (known: {', '.join(licences)}): "
                           "it admits no model")
    return out
