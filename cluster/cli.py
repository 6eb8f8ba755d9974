"""The `rafka` command line: a composition root, like the launcher, so it may import everything.

    rafka demo                                  storage demo: write, tear the tail, recover, read
    rafka demo --cluster                        3 controllers + 3 brokers: produce and consume
    rafka cluster up|status|down [options]      a local cluster of Ray actors
    rafka cluster info                          brokers, controller, topics
    rafka topic create|list|describe|delete|alter-config|add-partitions
    rafka produce TOPIC / rafka consume TOPIC   stdin lines → records → stdout
    rafka group list|describe|reset-offsets|delete
    rafka quorum describe / rafka leader elect
    rafka perf produce|consume
    rafka chaos kill|restart|pause|resume|partition|slow|heal TARGET

Client commands take --bootstrap-servers (default: the running local cluster's cluster.json),
-X key=value overrides and --format text|json (cluster/cli_common.py); each lives in its own
cluster/cli_*.py module and exits 1 when any item failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from chaos import cli as chaos_cli
from chaos.cli_run import add_run_parser
from cluster import cli_cluster, cli_group, cli_io, cli_perf, cli_topic
from cluster.cli_common import CliError, client_options
from cluster.cli_output import Output


def _add_cluster_commands(commands: argparse._SubParsersAction,  # type: ignore[type-arg]
                          parent: argparse.ArgumentParser) -> None:
    cluster = commands.add_parser("cluster", help="launch and inspect a local cluster")
    actions = cluster.add_subparsers(dest="action", required=True)
    cli_cluster.add_info(actions, parent)
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
    parent = client_options()
    _add_cluster_commands(commands, parent)
    topic_actions = cli_topic.register(commands, parent)
    cli_io.register(commands, parent, topic_actions)
    cli_group.register(commands, parent)
    cli_cluster.register(commands, parent)
    cli_perf.register(commands, parent)
    add_run_parser(chaos_cli.register(commands, parent))  # + `rafka chaos run`
    return parser


def run_client_command(args: argparse.Namespace) -> int:
    """Run a client command's handler; errors become `error: ...` on stderr and exit 1."""
    from clients.errors import ClientError
    from proto.errors import RafkaError

    out = Output(args.format)
    try:
        try:
            return int(args.run(args, out))
        finally:
            out.flush()
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `rafka consume t | head`: the reader is gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
    except (RafkaError, ClientError, TimeoutError, ValueError) as exc:
        print(f"error: {_describe_error(exc)}", file=sys.stderr)
        return 1


def _describe_error(exc: BaseException) -> str:
    name: Any = getattr(exc, "name", None)
    message: Any = getattr(exc, "message", None) or str(exc)
    return f"{name}: {message}" if name else f"{type(exc).__name__}: {message}"


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
    if getattr(args, "run", None) is not None:
        return run_client_command(args)
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
