"""`rafka chaos kill|restart|pause|resume|partition|slow|heal`: faults on a running cluster.

    rafka chaos kill leader:orders/0          ray.kill the partition's leader
    rafka chaos restart broker:2              same id, data dir and port; waits until unfenced
    rafka chaos pause controller:leader       SIGSTOP (resume: SIGCONT)
    rafka chaos partition broker:1 broker:2,broker:3,controller:*
    rafka chaos partition controller:leader   vs every other actor
    rafka chaos slow broker:3 --delay-ms 200 [--peers broker:1]
    rafka chaos heal                          clear every link fault

The cluster is the one `rafka cluster up` started (its cluster.json, found by --cluster and
--data-dir like every client command): the command joins its Ray and namespace, finds the
actors by name (`LocalCluster.attach`) and drives a `FaultInjector` (chaos/faults.py).
Leaders and coordinators are resolved through the brokers' metadata. Pauses outlive the
command, so their pids are kept in `<data-dir>/chaos-state.json` for a later `resume`.
`--history FILE` appends each fault as a `FaultOp` line (chaos/history.py).

`consumer:NAME` targets are refused here, with an error saying why: chaos reaches a consumer
through its actor (to kill, pause or set its fault table), and an ad hoc cluster has no
consumer actors known by name (`rafka cluster up` starts none; `rafka consume` and
applications are plain client processes, not Ray actors). Faults on group members, network
partitions included, work on a workload's group: `FaultInjector(consumers=group)` with a
`VerifiableConsumerGroup` (chaos/workloads/consumer.py), as `rafka chaos run` does.

`register` returns the `chaos` sub-command set so other chaos commands (`run`) can join it.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cluster.cli_common import CliError, read_cluster_file
from cluster.cli_output import Output

if TYPE_CHECKING:
    from chaos.faults import FaultInjector

STATE_FILE = "chaos-state.json"
TARGET_HELP = ("broker:ID|*, controller:ID|*|leader, leader:TOPIC/PARTITION, "
               "follower:TOPIC/PARTITION, coordinator:GROUP (comma-separated for several)")


def register(commands: Any, parent: argparse.ArgumentParser) -> Any:
    """Add `rafka chaos ...`; returns its sub-parsers (for `chaos run`)."""
    chaos = commands.add_parser("chaos", help="fault injection on a running cluster")
    actions = chaos.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("chaos")
    group.add_argument("--address", default=None,
                       help="the cluster's Ray (default: ray_address in cluster.json)")
    group.add_argument("--history", default=None, metavar="FILE",
                       help="append each fault to this history file (JSON lines)")
    group.add_argument("--seed", type=int, default=None, help="seed for random picks")
    for action, text in (("kill", "kill actors at once (ray.kill)"),
                         ("restart", "restart actors with the same id and data dir"),
                         ("pause", "SIGSTOP the actors' processes"),
                         ("resume", "SIGCONT the actors' processes")):
        p = actions.add_parser(action, parents=[parent, common], help=text)
        p.add_argument("target", help=TARGET_HELP)
        p.set_defaults(run=run_fault)
    p = actions.add_parser("partition", parents=[parent, common],
                           help="drop calls between two sides, both ways")
    p.add_argument("side_a", help=TARGET_HELP)
    p.add_argument("side_b", nargs="?", default=None,
                   help="the other side (default: every other broker and controller)")
    p.set_defaults(run=run_fault)
    p = actions.add_parser("slow", parents=[parent, common],
                           help="delay calls between actors and their peers")
    p.add_argument("target", help=TARGET_HELP)
    p.add_argument("--delay-ms", type=int, required=True, help="added delay each way")
    p.add_argument("--peers", default=None, help="default: every other broker and controller")
    p.set_defaults(run=run_fault)
    p = actions.add_parser("heal", parents=[parent, common], help="clear every link fault")
    p.set_defaults(run=run_fault)
    return actions


def run_fault(args: argparse.Namespace, out: Output) -> int:
    """Attach to the cluster, apply one fault, report what it resolved to."""
    import ray  # noqa: PLC0415 - the CLI imports Ray only when a chaos command runs

    from chaos.faults import FaultInjector  # noqa: PLC0415
    from chaos.history import HistoryWriter  # noqa: PLC0415
    from cluster.launcher import LocalCluster, _connect  # noqa: PLC0415

    _refuse_consumers(args)
    info = read_cluster_file(args.cluster, args.data_dir)
    if info is None:
        raise CliError(f"no running cluster {args.cluster!r} (no cluster.json; start one with "
                       "`rafka cluster up`)")
    address = str(args.address or info.get("ray_address"))
    try:
        _connect(address, str(info["namespace"]))
    except Exception as exc:  # noqa: BLE001 - a CLI reports and exits non-zero
        raise CliError(f"cannot reach the cluster's Ray at {address}: {exc}") from exc
    state_path = Path(str(info["data_dir"])) / STATE_FILE
    history = HistoryWriter(args.history, append=True) if args.history else None
    cluster = LocalCluster.attach(info)
    injector = FaultInjector(cluster, history=history, rng=random.Random(args.seed))
    try:
        _load_paused(injector, state_path)
        _apply(args, injector, out)
        _save_paused(injector, state_path)
    except (LookupError, RuntimeError) as exc:
        raise CliError(f"{args.action}: {exc}") from exc
    finally:
        injector.close()
        cluster.detach()
        if history is not None:
            history.close()
        ray.shutdown()
    return 0


def _refuse_consumers(args: argparse.Namespace) -> None:
    """Raise CliError for a `consumer:` target: an ad hoc cluster's consumers are unreachable."""
    from chaos.targets import TargetKind, parse_targets  # noqa: PLC0415

    for attr in ("target", "side_a", "side_b", "peers"):
        spec = getattr(args, attr, None)
        if not spec:
            continue
        try:
            specs = parse_targets(spec)
        except ValueError:
            continue  # reported as a bad target by the injector
        consumers = [ts.text for ts in specs if ts.kind is TargetKind.CONSUMER]
        if consumers:
            raise CliError(
                f"{args.action} {', '.join(consumers)}: the consumers of an ad hoc cluster are "
                "not reachable by name (`rafka cluster up` starts no consumer actors; "
                "`rafka consume` and applications are plain client processes, not Ray actors "
                "whose fault table chaos could set). Consumer faults need a workload's "
                "consumer group: `rafka chaos run`, or FaultInjector(consumers=...) with a "
                "chaos.workloads VerifiableConsumerGroup.")


def _apply(args: argparse.Namespace, injector: FaultInjector, out: Output) -> None:
    from chaos.targets import targets_text  # noqa: PLC0415

    action = args.action
    if action in ("kill", "restart", "pause", "resume"):
        verb = {"kill": "killed", "restart": "restarted", "pause": "paused",
                "resume": "resumed"}[action]
        targets = getattr(injector, action)(args.target)
        out.line(f"{verb} {targets_text(targets)}")
    elif action == "partition":
        injector.partition(args.side_a, args.side_b)
        out.line(f"partitioned {args.side_a} from {args.side_b or 'every other actor'}")
    elif action == "slow":
        injector.slow(args.target, args.delay_ms, args.peers)
        out.line(f"slowed {args.target} by {args.delay_ms} ms each way")
    else:
        injector.heal()
        out.line("healed every link")
    op = injector.recorded[-1]
    out.value("fault", op.to_json())
    partitions = op.detail.get("partitions")
    if isinstance(partitions, list) and partitions:
        out.line("partitions aimed at: " + ", ".join(
            f"{pair[0]}/{pair[1]}" for pair in partitions if isinstance(pair, list)))


def _load_paused(injector: FaultInjector, path: Path) -> None:
    from chaos.targets import parse_target  # noqa: PLC0415

    if not path.exists():
        return
    paused: dict[str, int] = json.loads(path.read_text()).get("paused", {})
    for text, pid in paused.items():
        for target in injector.resolve(parse_target(text).text):
            injector.mark_paused(target, int(pid))


def _save_paused(injector: FaultInjector, path: Path) -> None:
    paused = {str(t): pid for t, pid in injector.paused_pids().items()}
    path.write_text(json.dumps({"paused": paused}, indent=2, sort_keys=True) + "\n")
