"""The admin API: virtual keys and teams, on when ``[admin] secret`` is set.

    POST   /admin/keys                 make a key; the answer holds its secret, shown this once
    GET    /admin/keys                 every key (never a secret nor its hash)
    GET    /admin/keys/NAME            one key
    PATCH  /admin/keys/NAME            change fields (``null`` clears one)
    DELETE /admin/keys/NAME            revoke: refused from now on, kept for the ledger's history
    POST   /admin/keys/NAME/rotate     a new secret for the key; the old one is refused at once (a revoked
                                       key only with {"reactivate": true}, which makes it work again)
    POST   /admin/teams                make or replace a team;  GET /admin/teams[/NAME]
    PATCH  /admin/teams/NAME           change its limits;       DELETE /admin/teams/NAME
    POST   /admin/probe                ask each model one tiny real request now ({"models": [...]}, or every
                                       model), its breakers told the outcome (``polyroute.probing.on_demand``)

Every call sends ``Authorization: Bearer <admin secret>``. Fields are named as in
``[keys.NAME]`` and ``[teams.NAME]``: ``name``, ``team``, ``policy``, ``routes``,
``budget_usd``, ``budget_period``, ``rpm``, ``tpm``, ``expires_at``.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from polyroute.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PolyrouteError,
    Unauthorized,
)
from polyroute.gateway import Gateway
from polyroute.probing.on_demand import OnDemandProbes
from polyroute.server.answers import Reply
from polyroute.server.dispatch import request_key
from polyroute.server.errors import error_response, from_validation
from polyroute.server.http11 import Request
from polyroute.tenancy.fields import KeyFields, TeamFields, check_expiry, check_name, check_references, team_members
from polyroute.tenancy.model import KeyRecord, Limits, TeamRecord, digest, listed, new_secret, with_changes
from polyroute.tenancy.stores import KeyStore

PREFIX = "/admin/"
class Admin:
    def __init__(self, gateway: Gateway, store: KeyStore, secret_digest: bytes) -> None:
        self.gateway = gateway
        self.store = store
        self._digest = secret_digest
        self.config = gateway.fleet.config
        self.probes = OnDemandProbes(gateway)

    async def handle(self, request: Request) -> Reply:
        try:
            self.authorize(request)
        except PolyrouteError as exc:
            return error_response(exc)
        return await self.serve(request.method, request.path.removeprefix(PREFIX), request.body)

    async def serve(self, method: str, path: str, body: bytes) -> Reply:
        """Answer ``METHOD /admin/PATH`` for a caller already authorised (the admin key, a console session)."""
        try:
            parts = path.strip("/").split("/")
            kind, rest = parts[0], parts[1:]
            if kind == "probe" and not rest:
                return await self.probe(method, body)  # changes breakers, not keys: nothing to tell tenancy
            if kind == "keys":
                answer = await self.keys(method, rest, body)
            elif kind == "teams":
                answer = await self.teams(method, rest, body)
            else:
                raise NotFound(f"Unknown path: {method} {PREFIX}{path}")
            if method != "GET":
                await self.gateway.tenancy.changed()  # this process at once, the others told
            return answer
        except ValidationError as exc:
            return error_response(from_validation(exc, ADMIN_FIELDS))
        except PolyrouteError as exc:
            return error_response(exc)

    def authorize(self, request: Request) -> None:
        require_admin(request, self._digest)

    # -- keys ------------------------------------------------------------------------------------

    async def keys(self, method: str, rest: list[str], body: bytes) -> Reply:
        if not rest:
            if method == "GET":
                shown, _ = listed(self.config, await self.store.keys(), [])
                return _json({"object": "list", "data": shown})
            if method == "POST":
                return await self.create_key(_body(body))
            raise _not_allowed(method, "GET, POST")
        name = rest[0]
        if rest[1:] == ["rotate"] and method == "POST":
            return await self.rotate(name, bool(_body(body).get("reactivate")) if body.strip() else False)
        if rest[1:]:
            raise NotFound(f"Unknown path: {method} /admin/keys/{'/'.join(rest)}")
        if method == "GET" and name in self.config.keys:
            shown, _ = listed(self.config, [], [])
            return _json(next(k for k in shown if k["name"] == name))
        record = await self._key(name)
        if method == "GET":
            return _json(record.public())
        if method == "PATCH":
            raw = _body(body)
            _same_name(raw, name)
            fields = KeyFields.model_validate(raw).model_dump(include=set(raw) - {"name"})
            await self.check_references(fields)
            changed = with_changes(record, fields)
            await self.store.put_key(changed)
            return _json(changed.public())
        if method == "DELETE":
            revoked = with_changes(record, {"revoked": True})
            await self.store.put_key(revoked)
            return _json(revoked.public())
        raise _not_allowed(method, "GET, PATCH, DELETE")

    async def create_key(self, raw: dict[str, Any]) -> Reply:
        f = KeyFields.model_validate(raw)
        name = check_name(f.name)
        check_expiry(f)
        if name in self.config.keys:
            raise Conflict(f"key {name!r} is defined in the config file", param="name")
        await self.check_references(raw)
        secret = new_secret()
        record = KeyRecord(
            name, digest(secret), f.team, f.policy, tuple(f.routes) if f.routes is not None else None,
            f.limits(), f.expires_at, created_at=datetime.now(UTC),
        )
        try:
            await self.store.add_key(record)
        except KeyError:
            raise Conflict(f"a key named {name!r} exists; rotate it or choose another name",
                           param="name") from None
        return _json({**record.public(), "secret": secret}, 201)

    async def check_references(self, fields: dict[str, Any]) -> None:
        teams = [t.name for t in await self.store.teams()] if fields.get("team") is not None else []
        check_references(fields, self.config, teams)

    async def rotate(self, name: str, reactivate: bool = False) -> Reply:
        """A new secret. A revoked key is reissued (made to work again) only when asked in so many words: a
        rotation meant for a live key must not undo a revocation made meanwhile (after a leak)."""
        record = await self._key(name)
        if record.revoked and not reactivate:
            raise Conflict(f"key {name!r} is revoked: a new secret would make it work again; send "
                           '{"reactivate": true} to reissue it', param="name")
        secret = new_secret()
        rotated = with_changes(record, {"digest": digest(secret), "revoked": False})
        await self.store.put_key(rotated)
        return _json({**rotated.public(), "secret": secret})

    async def _key(self, name: str) -> KeyRecord:
        record = await self.store.key(name)
        if record is None and name in self.config.keys:
            raise Conflict(f"key {name!r} is defined in the config file; change it there", param="name")
        if record is None:
            raise NotFound(f"no key named {name!r} in the store", param="name")
        return record

    # -- probes ----------------------------------------------------------------------------------

    async def probe(self, method: str, body: bytes) -> Reply:
        if method != "POST":
            raise _not_allowed(method, "POST")
        ask = ProbeAsk.model_validate(_body(body))
        results = await self.probes.run(ask.models)
        return _json({"object": "list", "data": results, "spacing_s": self.probes.spacing})

    # -- teams -----------------------------------------------------------------------------------

    async def teams(self, method: str, rest: list[str], body: bytes) -> Reply:
        if not rest:
            if method == "GET":
                _, shown = listed(self.config, [], await self.store.teams())
                return _json({"object": "list", "data": shown})
            if method == "POST":
                f = TeamFields.model_validate(_body(body))
                if f.name in self.config.teams:  # the config's would win, and this one be shown but not held to
                    raise Conflict(f"team {f.name!r} is defined in the config file", param="name")
                made = TeamRecord(check_name(f.name), f.limits())
                await self.store.put_team(made)
                return _json(made.public(), 201)
            raise _not_allowed(method, "GET, POST")
        name = rest[0]
        if method == "GET" and name in self.config.teams and not rest[1:]:
            _, shown = listed(self.config, [], [])
            return _json(next(t for t in shown if t["name"] == name))
        team = await self.store.team(name)
        if team is None and name in self.config.teams and not rest[1:]:
            raise Conflict(f"team {name!r} is defined in the config file; change it there", param="name")
        if team is None or rest[1:]:
            raise NotFound(f"no team named {name!r} in the store", param="name")
        if method == "GET":
            return _json(team.public())
        if method == "PATCH":
            raw = _body(body)
            _same_name(raw, name)
            fields = TeamFields.model_validate(raw).model_dump(include=set(raw) - {"name"})
            changed = TeamRecord(name, Limits(**{**_limits(team.limits), **fields}))
            await self.store.put_team(changed)
            return _json(changed.public())
        if method == "DELETE":
            members = team_members(name, self.config, await self.store.keys())
            if members and _body(body or b"{}").get("force") is not True:
                raise Conflict(
                    f"team {name!r} still holds keys {', '.join(members)}: deleting it lifts its budget and limits "
                    'from them. Move them to another team first, or send {"force": true} to delete it anyway',
                    param="name")
            await self.store.delete_team(name)
            return _json({"name": name, "deleted": True, "keys_left_without_team_limits": members})
        raise _not_allowed(method, "GET, PATCH, DELETE")



class ProbeAsk(BaseModel):
    """The body of ``POST /admin/probe``: the models to ask (a route stands for its models); none: every one."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] | None = Field(default=None, max_length=1000)


# Every field the admin API's bodies take: what a mistyped one is named against.
ADMIN_FIELDS = frozenset({*KeyFields.model_fields, *TeamFields.model_fields, *ProbeAsk.model_fields, "force",
                          "reactivate"})


def require_admin(request: Request, admin_digest: bytes, what: str = "The admin API") -> None:
    """Refuse a request that does not carry the admin key (401 without one, 403 with another)."""
    presented = request_key(request)
    if not presented:
        raise Unauthorized(f"{what} needs the admin key: 'Authorization: Bearer <admin key>'.")
    if not hmac.compare_digest(hashlib.sha256(presented.encode("utf-8")).digest(), admin_digest):
        raise Forbidden("The key sent is not the admin key.")


def _limits(lim: Limits) -> dict[str, Any]:
    return {"budget_usd": lim.budget_usd, "budget_period": lim.budget_period, "rpm": lim.rpm, "tpm": lim.tpm}


def _same_name(raw: dict[str, Any], name: str) -> None:
    """A PATCH may repeat the name; it cannot change it (the ledger's history is kept by name)."""
    if "name" in raw and raw["name"] != name:
        raise InvalidRequest(f"a name cannot be changed ({name!r}); make another and revoke this one", param="name")


def _body(body: bytes) -> dict[str, Any]:
    try:
        raw = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidRequest("Request body must be a JSON object.")
    return raw


def _not_allowed(method: str, allowed: str) -> MethodNotAllowed:
    return MethodNotAllowed(f"Method {method} is not allowed here (allowed: {allowed})")


def _json(doc: Any, status: int = 200) -> Reply:
    return Reply(orjson.dumps(doc), status)

