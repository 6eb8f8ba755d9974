"""The `rafka` command line: a composition root, like the launcher, so it may import everything.

    rafka demo                                  storage demo: write, tear the tail, recover, read
    rafka demo --cluster                        3 controllers + 3 brokers: produce and consume
    rafka cluster up|status|down [options]      a local cluster of Ray actors
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def _add_cluster_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cluster = commands.add_parser("cluster", help="launch and inspect a local cluster")
    actions = cluster.add_subparsers(dest="action", required=True)
    for action, text in (
        ("up", "start controllers (and brokers) as named Ray actors"),
        ("status", "show the actors, their roles and addresses"),
        ("down", "stop the cluster"),
    ):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("--name", default="rafka", help="cluster name (Ray namespace rafka-NAME)")
        sub.add_argument("--data-dir", default=None, help="where logs and cluster.json live")
        sub.add_argument("--address", default=None, help="join this Ray cluster ('auto', host:port)")
        sub.add_argument("-b", "--brokers", type=int, default=3)
        sub.add_argument("-c", "--controllers", type=int, default=3)
        sub.add_argument("--purge", action="store_true", help="with down: delete the data dir")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rafka", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a short storage demo")
    demo.add_argument("--data-dir", default=None, help="keep the demo log here")
    demo.add_argument("--cluster", action="store_true",
                      help="launch a local cluster, produce and consume a few records")
    _add_cluster_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "demo" and args.cluster:
        from cluster.demo_cluster import run_cluster_demo

        return run_cluster_demo()
    if args.command == "demo":
        from cluster.demo import run_demo

        return run_demo(args.data_dir)
    if args.command == "cluster":
        from cluster import launcher

        handler = {
            "up": launcher.cluster_up,
            "status": launcher.cluster_status,
            "down": launcher.cluster_down,
        }[args.action]
        return int(handler(args) or 0)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
