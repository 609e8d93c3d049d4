"""``polyroute config check FILE``: validate a config file without starting anything."""

from __future__ import annotations

import argparse
import json

from polyroute.config import Config
from polyroute.errors import ConfigError

NO_MODELS = "no [models.*]: a gateway on this config answers every request with 404; add a backend and a model"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="check or show a config file", description="Check or show a config file.")
    inner = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = inner.add_parser("check", help="validate FILE: unknown keys, dangling references, bad values")
    check.add_argument("file", help="path to a polyroute TOML config")
    check.set_defaults(func=run_check)
    show = inner.add_parser("show", help="print the effective config (secrets redacted) as JSON")
    show.add_argument("file", nargs="?", help="a TOML config; without it, the embedded default")
    show.set_defaults(func=run_show)


def check_families(config: Config) -> None:
    from polyroute.catalog import load_catalog_for

    # Reading the [catalog] files here is also what checks them.
    catalog = load_catalog_for(config)
    for name, model in config.models.items():
        if model.family and catalog.get(model.family) is None:
            known = ", ".join(sorted(catalog.families))
            raise ConfigError(f"unknown catalog family {model.family!r} (known: {known})",
                              source=config.source, key=f"models.{name}.family")


def run_check(args: argparse.Namespace) -> int:
    from polyroute.adapters import check_installed
    from polyroute.auth import check_admin_apart
    from polyroute.catalog import load_catalog_for
    from polyroute.cli.serve import is_loopback
    from polyroute.config_embeddings import check_embeddings
    from polyroute.settings import effective_config

    config = effective_config(args.file)
    check_families(config)
    check_installed(config)
    check_embeddings(config, load_catalog_for(config))
    check_admin_apart(config)
    # a router file that cannot be read stops here
    cautions = cautions_of(config)
    print(f"{args.file}: ok: {len(config.backends)} backends, {len(config.models)} models, "
          f"{len(config.routes)} routes, {len(config.policies)} policies, {len(config.keys)} keys")
    for key, var in config.unset_secrets():
        print(f"warning: {key} (env:{var}): {var} is not set in this environment; export it before serving")
    for caution in cautions:
        print(f"warning: {caution}")
    if not config.models:
        print(f"warning: {NO_MODELS}")
    host, _ = config.gateway.host_port()
    if not config.keys and config.admin.secret is None and not is_loopback(host):
        print(f"warning: gateway.listen: {host} is beyond loopback and no [keys] are configured: serve refuses "
              "an open gateway there; add [keys.NAME], listen on 127.0.0.1, or serve with --allow-open")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from polyroute.settings import effective_config

    print(json.dumps(effective_config(args.file).redacted(), indent=2))
    return 0


def cautions_of(config: Config) -> list[str]:
    """Everything valid in ``config`` that is likely a mistake: ``config check`` prints it, ``serve`` logs it."""
    from polyroute.adapters.fake import fake_cautions
    from polyroute.catalog import load_catalog_for
    from polyroute.routing import quality_cautions
    from polyroute.routing.policy import policy_cautions

    families = load_catalog_for(config).families.values()
    return [*config.cautions(), *quality_cautions(config), *fake_cautions(config),
            *policy_cautions(config.policies, families)]
