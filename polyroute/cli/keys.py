"""``polyroute keys create|list|revoke|rotate`` and ``polyroute teams create|list|delete``.

They speak to the store directly (``--store``, else the config's ``[store] url``, else
the default file; a running gateway reads the change within a second), or, with
``--url``, to a running gateway's admin API with the admin key from
``$POLYROUTE_ADMIN_KEY``. Flags are
named as the fields are everywhere: ``--budget-usd``, ``--budget-period``, ``--rpm``,
``--tpm``, ``--expires-at``, ``--team``, ``--policy``, ``--routes``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from polyroute.config import POSTGRES_SCHEMES, Config
from polyroute.errors import InvalidRequest
from polyroute.tenancy.fields import KeyFields, TeamFields, check_expiry, check_name, check_references, team_members
from polyroute.tenancy.model import PERIODS, KeyRecord, TeamRecord, digest, listed, new_secret, with_changes
from polyroute.tenancy.setup import open_store as open_config_store
from polyroute.tenancy.setup import store_at
from polyroute.tenancy.sqlite import path_of
from polyroute.tenancy.stores import Store

ADMIN_ENV = "POLYROUTE_ADMIN_KEY"
_F = TypeVar("_F", KeyFields, TeamFields)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="make, list, revoke and rotate virtual keys in the store")
    inner = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = inner.add_parser("create", help="make a key and print its secret (shown only this once)")
    create.add_argument("name")
    _limit_flags(create)
    create.add_argument("--team")
    create.add_argument("--policy")
    create.add_argument("--routes", help="comma-separated routes or models the key may use")
    create.add_argument("--expires-at", help="ISO 8601 with a zone, e.g. 2027-01-01T00:00:00Z")
    create.set_defaults(func=run_create)
    for name, fn, what in (("revoke", run_revoke, "refuse the key from now on"),
                           ("rotate", run_rotate, "give the key a new secret; the old one is refused")):
        p = inner.add_parser(name, help=what)
        p.add_argument("name")
        _store_flags(p)
        p.set_defaults(func=fn)
        if name == "rotate":
            p.add_argument("--reactivate", action="store_true",
                           help="reissue a revoked key: it works again, with the new secret")
    lst = inner.add_parser("list", help="every key of the store (never a secret)")
    _store_flags(lst)
    lst.add_argument("--format", choices=("table", "json"), default="table")
    lst.set_defaults(func=run_list)

    teams = sub.add_parser("teams", help="make, list and delete teams in the store")
    tin = teams.add_subparsers(dest="teams_command", metavar="ACTION", required=True)
    tc = tin.add_parser("create", help="make or replace a team and its shared budget and limits")
    tc.add_argument("name")
    _limit_flags(tc)
    tc.set_defaults(func=run_team_create)
    tl = tin.add_parser("list", help="every team of the store")
    _store_flags(tl)
    tl.set_defaults(func=run_team_list)
    td = tin.add_parser("delete", help="delete a team; refused while keys name it, unless --force (they then keep "
                                       "the name, without its limits)")
    td.add_argument("name")
    td.add_argument("--force", action="store_true", help="delete it even though keys still name it")
    _store_flags(td)
    td.set_defaults(func=run_team_delete)


def _store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=os.environ.get("POLYROUTE_CONFIG"),
                   help="a TOML config whose [store] url to use (default: $POLYROUTE_CONFIG)")
    p.add_argument("--store", help="sqlite:///PATH or postgresql://USER@HOST/DB (overrides the config's)")
    p.add_argument("--url", help="a running gateway (http://HOST:PORT): use its admin API instead of the store")


def _limit_flags(p: argparse.ArgumentParser) -> None:
    _store_flags(p)
    p.add_argument("--budget-usd", type=float)
    p.add_argument("--budget-period", choices=PERIODS, default="month")
    p.add_argument("--rpm", type=int)
    p.add_argument("--tpm", type=int)


def open_store(args: argparse.Namespace, existing: bool = False) -> Store:
    """The store ``--store`` names, else the config's (with its password), else the default SQLite file.

    ``existing``: for a command that only reads or changes what is there, a SQLite file that
    does not exist is an error (a mistyped path), not a new empty store.
    """
    url, config = args.store, None
    if url is None and args.config:
        from polyroute.settings import effective_config

        config = effective_config(args.config)
        url = config.store.url
    if existing and not (url or "").startswith(POSTGRES_SCHEMES) and not path_of(url).exists():
        raise InvalidRequest(f"no store at {path_of(url)}: nothing was written there (check --store, or the "
                             "config's [store] url)")
    store = open_config_store(config) if config is not None else store_at(url)
    # Said on stderr (stdout stays for what a script reads): the store a command used is not always the
    # one a running gateway uses, and a key made in the wrong one is refused there.
    print(f"polyroute: store {store.where}", file=sys.stderr)
    return store


def _config_of(args: argparse.Namespace) -> Config | None:
    """The config of ``--config`` (or ``$POLYROUTE_CONFIG``), whose keys and teams a listing shows; else none."""
    from polyroute.settings import effective_config

    return effective_config(args.config) if args.config else None


def _fields(args: argparse.Namespace, model: type[_F]) -> _F:
    """The flags given, checked as the admin API checks the same fields (their bounds, the name's rule)."""
    given = {name: getattr(args, name) for name in model.model_fields if getattr(args, name, None) is not None}
    if isinstance(given.get("routes"), str):
        given["routes"] = [r.strip() for r in given["routes"].split(",") if r.strip()]
    try:
        fields = model.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "a flag"
        raise InvalidRequest(f"{flag}: {first['msg'].removeprefix('Value error, ')}") from None
    check_name(fields.name)
    return fields


def run_create(args: argparse.Namespace) -> int:
    f = _fields(args, KeyFields)
    check_expiry(f)
    if args.url:
        body: dict[str, Any] = {"name": args.name, "team": args.team, "policy": args.policy,
                                "budget_usd": args.budget_usd, "budget_period": args.budget_period,
                                "rpm": args.rpm, "tpm": args.tpm, "expires_at": args.expires_at}
        if args.routes:
            body["routes"] = [r.strip() for r in args.routes.split(",") if r.strip()]
        made = _api(args.url, "POST", "keys", body)
        print(f"key {args.name} created; its secret, shown only this once:\n{made['secret']}")
        return 0
    secret = new_secret()
    routes = tuple(f.routes) if f.routes else None
    record = KeyRecord(args.name, digest(secret), f.team, f.policy, routes, f.limits(), f.expires_at,
                       created_at=datetime.now(UTC))
    config = _config_of(args)
    if config is not None and args.name in config.keys:
        raise InvalidRequest(f"key {args.name!r} is defined in the config file; change it there")
    store = open_store(args)
    try:
        teams = [t.name for t in asyncio.run(store.teams())] if f.team is not None else []
        check_references({"team": f.team, "policy": f.policy, "routes": f.routes}, config, teams)
        asyncio.run(store.add_key(record))
    except KeyError:
        raise InvalidRequest(f"a key named {args.name!r} exists; rotate it or choose another name") from None
    finally:
        store.close()
    print(f"key {args.name} created; its secret, shown only this once:\n{secret}")
    return 0


def _change(args: argparse.Namespace, changes: dict[str, Any], *, reissue: bool = True) -> KeyRecord:
    store = open_store(args, existing=True)
    try:
        record = asyncio.run(store.key(args.name))
        if record is None and (config := _config_of(args)) is not None and args.name in config.keys:
            raise InvalidRequest(f"key {args.name!r} is defined in the config file {config.source}; change it "
                                 "there (revoked = true), not in the store")
        if record is None:
            raise InvalidRequest(f"no key named {args.name!r} in {store.where}")
        if record.revoked and not reissue:
            raise InvalidRequest(f"key {args.name!r} is revoked: a new secret would make it work again; "
                                 "pass --reactivate to reissue it")
        changed = with_changes(record, changes)
        asyncio.run(store.put_key(changed))
        return changed
    finally:
        store.close()


def run_revoke(args: argparse.Namespace) -> int:
    if args.url:
        _api(args.url, "DELETE", f"keys/{args.name}")
    else:
        _change(args, {"revoked": True})
    print(f"key {args.name} revoked")
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    if args.url:
        body = {"reactivate": True} if args.reactivate else None
        secret = str(_api(args.url, "POST", f"keys/{args.name}/rotate", body)["secret"])
    else:
        secret = new_secret()
        _change(args, {"digest": digest(secret), "revoked": False}, reissue=args.reactivate)
    print(f"key {args.name} rotated; its new secret, shown only this once:\n{secret}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    if args.url:
        keys = list(_api(args.url, "GET", "keys")["data"])
    else:
        store = open_store(args, existing=True)
        try:
            keys, _ = listed(_config_of(args), asyncio.run(store.keys()), [])
        finally:
            store.close()
    if args.format == "json":
        print(json.dumps(keys, indent=2))
        return 0
    cols = ("name", "source", "team", "budget_usd", "budget_period", "rpm", "tpm", "expires_at", "revoked")
    _table(cols, [[k[c] for c in cols] for k in keys])
    return 0


def run_team_create(args: argparse.Namespace) -> int:
    team = TeamRecord(args.name, _fields(args, TeamFields).limits())
    if args.url:
        _api(args.url, "POST", "teams", team.public())
        print(f"team {args.name} saved")
        return 0
    if args.config:
        from polyroute.settings import effective_config

        if args.name in effective_config(args.config).teams:
            raise InvalidRequest(f"team {args.name!r} is defined in the config file; change it there")
    store = open_store(args)
    try:
        asyncio.run(store.put_team(team))
    finally:
        store.close()
    print(f"team {args.name} saved")
    return 0


def run_team_list(args: argparse.Namespace) -> int:
    if args.url:
        teams = list(_api(args.url, "GET", "teams")["data"])
    else:
        store = open_store(args, existing=True)
        try:
            _, teams = listed(_config_of(args), [], asyncio.run(store.teams()))
        finally:
            store.close()
    cols = ("name", "source", "budget_usd", "budget_period", "rpm", "tpm")
    _table(cols, [[t[c] for c in cols] for t in teams])
    return 0


def run_team_delete(args: argparse.Namespace) -> int:
    if args.url:
        _api(args.url, "DELETE", f"teams/{args.name}", {"force": True} if args.force else None)
        print(f"team {args.name} deleted")
        return 0
    store = open_store(args, existing=True)
    try:
        members = team_members(args.name, _config_of(args), asyncio.run(store.keys()))
        if members and not args.force:
            raise InvalidRequest(f"team {args.name!r} still holds keys {', '.join(members)}: deleting it lifts its "
                                 "budget and limits from them. Move them to another team first, or pass --force")
        if not asyncio.run(store.delete_team(args.name)):
            raise InvalidRequest(f"no team named {args.name!r} in {store.where}")
    finally:
        store.close()
    print(f"team {args.name} deleted" + (f"; keys left without its limits: {', '.join(members)}" if members else ""))
    return 0


def _api(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One admin API call; its error message, as the gateway words it, when it fails."""
    import httpx

    admin_key = os.environ.get(ADMIN_ENV)
    if not admin_key:
        raise InvalidRequest(f"--url needs the admin key: export {ADMIN_ENV}=... (the gateway's [admin] secret)")
    try:
        root = url.rstrip("/").removesuffix("/v1")  # (the URL clients use works too)
        resp = httpx.request(method, f"{root}/admin/{path}", timeout=30,
                             json=None if body is None else {k: v for k, v in body.items() if v is not None},
                             headers={"authorization": f"Bearer {admin_key}"})
    except httpx.HTTPError as exc:
        raise InvalidRequest(f"cannot reach {url}: {exc}") from None
    try:
        doc: dict[str, Any] = resp.json()
    except ValueError:
        doc = {}
    if resp.status_code >= 400:
        message = (doc.get("error") or {}).get("message") or f"HTTP {resp.status_code}"
        raise InvalidRequest(f"{url}: {message}")
    return doc


def _table(cols: tuple[str, ...], rows: list[list[Any]]) -> None:
    cells = [list(cols), *[["-" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
