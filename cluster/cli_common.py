"""What every client command of `rafka` shares: global options, the bootstrap servers, -X.

Every client command accepts (after the subcommand, Kafka style):
    --bootstrap-servers / --bootstrap-server HOST:PORT,...   where to connect
    --cluster NAME, --data-dir D      which local cluster's cluster.json to read by default
    -X key=value                      client config overrides (dotted Kafka names, rpk style)
    --format text|json                aligned table (Kafka's column names) or JSON

Bootstrap servers, first found: the flag, $RAFKA_BOOTSTRAP_SERVERS, the `bootstrap_servers` of
`<data-dir>/cluster.json` (default `./.rafka/<cluster>/`, where `rafka cluster up` writes it).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

BOOTSTRAP_ENV = "RAFKA_BOOTSTRAP_SERVERS"


class CliError(Exception):
    """A user-facing failure: printed as `error: <message>` and exit code `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def client_options() -> argparse.ArgumentParser:
    """The parent parser holding the global client options (add with `parents=[...]`)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection and output")
    group.add_argument("--bootstrap-servers", "--bootstrap-server", dest="bootstrap_servers",
                       default=None, metavar="HOST:PORT,...",
                       help=f"brokers to contact (default: ${BOOTSTRAP_ENV}, else the "
                            "running local cluster's cluster.json)")
    group.add_argument("--cluster", "--name", dest="cluster", default="rafka", metavar="NAME",
                       help="local cluster whose cluster.json gives the default servers")
    group.add_argument("--data-dir", default=None,
                       help="directory of that cluster.json (default ./.rafka/NAME)")
    group.add_argument("-X", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="client config override (repeatable)")
    group.add_argument("--format", choices=("text", "json"), default="text",
                       help="output format")
    return parent


def parse_pairs(items: Iterable[str], what: str, separators: str = "=") -> dict[str, str]:
    """["k=v", ...] → {k: v}; the first of `separators` found in each item splits it.

    Raises:
        CliError: an item without a separator or with an empty key.
    """
    out: dict[str, str] = {}
    for item in items:
        cut = min((i for i in (item.find(s) for s in separators) if i > 0), default=-1)
        if cut <= 0:
            raise CliError(f"{what} {item!r} is not KEY{separators[0]}VALUE")
        out[item[:cut]] = item[cut + 1:]
    return out


def read_cluster_file(cluster: str, data_dir: str | None) -> dict[str, Any] | None:
    """The local cluster's cluster.json, or None when there is none."""
    from cluster.launcher import CLUSTER_FILE, DEFAULT_DATA_ROOT  # imports ray: only if needed

    base = Path(data_dir) if data_dir else Path.cwd() / DEFAULT_DATA_ROOT / cluster
    path = base / CLUSTER_FILE
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def bootstrap_servers(args: argparse.Namespace) -> str:
    """The servers to contact; see the module docstring for the order.

    Raises:
        CliError: none given and no running local cluster found.
    """
    if args.bootstrap_servers:
        return str(args.bootstrap_servers)
    if os.environ.get(BOOTSTRAP_ENV):
        return os.environ[BOOTSTRAP_ENV]
    info = read_cluster_file(args.cluster, args.data_dir)
    if info and info.get("bootstrap_servers"):
        return str(info["bootstrap_servers"])
    raise CliError(
        f"no --bootstrap-servers given, ${BOOTSTRAP_ENV} is unset and no running cluster "
        f"{args.cluster!r} was found (start one with `rafka cluster up`)")


def client_config(args: argparse.Namespace, base: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The dotted config of a client: `base`, then -X overrides, plus bootstrap.servers."""
    config: dict[str, Any] = dict(base or {})
    config.update(parse_pairs(args.overrides, "-X"))
    config["bootstrap.servers"] = bootstrap_servers(args)
    return config


def make_admin(args: argparse.Namespace, *, overrides: bool = True) -> Any:
    """An `Admin` for this command (with -X unless `overrides` is False)."""
    from clients.admin import Admin

    if overrides:
        return Admin(client_config(args))
    return Admin({"bootstrap.servers": bootstrap_servers(args)})
