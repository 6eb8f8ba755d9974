"""`rafka chaos run`: one scenario against a cluster of its own, a verdict and an exit code.

    rafka chaos run --scenario leader-kill --duration 30 --seed 7 --output runs/lk7 \
        [--brokers 3 --partitions 6 --rf 3 --min-insync 2 --acks all]

A live progress line (ops/s, acks, errors, faults) goes to stderr; the verdict table to stdout;
`DIR/report.json`, `DIR/timeline.html` and `DIR/history.jsonl` are written. Exit code 0 when
every check passed, 1 on any violation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from chaos.history import ACKS_ALL

SCENARIO_HELP = "scenario name(s), composed with + (e.g. leader-kill+consumer-kill)"


def _acks(text: str) -> int:
    if text in ("all", "-1"):
        return ACKS_ALL
    if text in ("0", "1"):
        return int(text)
    raise argparse.ArgumentTypeError(f"acks must be all, -1, 0 or 1, not {text!r}")


def add_run_parser(actions: Any) -> argparse.ArgumentParser:
    """Add `run` to the `rafka chaos` subcommands; its handler is `args.run(args, out)`."""
    from chaos.scenarios import SCENARIOS

    run = actions.add_parser("run", help="run a chaos scenario on a cluster of its own",
                             description=__doc__.split("\n\n")[0])
    run.add_argument("--scenario", required=True,
                     help=f"{SCENARIO_HELP}; one of: {', '.join(SCENARIOS)}")
    run.add_argument("--duration", type=float, default=30.0, help="seconds of faults (30)")
    run.add_argument("--seed", type=int, default=None, help="replay seed (default: random)")
    run.add_argument("--output", required=True, help="directory for report.json and more")
    run.add_argument("--brokers", type=int, default=3)
    run.add_argument("--controllers", type=int, default=3)
    run.add_argument("--partitions", type=int, default=6)
    run.add_argument("--rf", type=int, default=3, help="replication factor (3)")
    run.add_argument("--min-insync", type=int, default=2, help="min.insync.replicas (2)")
    run.add_argument("--acks", type=_acks, default=ACKS_ALL, help="all, 1 or 0 (all)")
    run.add_argument("--no-idempotence", action="store_true",
                     help="producers without enable.idempotence")
    run.add_argument("--producers", type=int, default=2, help="producer processes (2)")
    run.add_argument("--rate", type=float, default=100.0, help="sends/s per producer (100)")
    run.add_argument("--consumers", type=int, default=3, help="group members (3)")
    run.add_argument("--unclean", action="store_true",
                     help="unclean.leader.election.enable=true (unsafe, for the loss check)")
    run.add_argument("--ack-bound-ms", type=int, default=2000,
                     help="bound on the median time from a leader kill to the first ack")
    run.add_argument("--keep-data", action="store_true", help="keep the logs under DIR/data")
    run.set_defaults(run=run_command, format="text")
    return run


def run_command(args: argparse.Namespace, out: Any = None) -> int:
    """Run the scenario; prints the verdict table; 0 if valid, 1 on any violation, 130 if
    interrupted (Ctrl-C)."""
    import random

    from chaos.report import render_table
    from chaos.run_runtime import RunConfig, run_chaos

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"seed={seed}", file=sys.stderr)
    config = RunConfig(
        scenario=args.scenario, duration_s=args.duration, seed=seed,
        output=Path(args.output), brokers=args.brokers, controllers=args.controllers,
        partitions=args.partitions, replication_factor=args.rf, min_insync=args.min_insync,
        acks=args.acks, idempotent=not args.no_idempotence, producers=args.producers,
        rate_per_s=args.rate, consumers=args.consumers, unclean=args.unclean,
        ack_bounds_ms={"kill:leader": args.ack_bound_ms}, keep_data=args.keep_data)
    try:
        result = run_chaos(config)
    except KeyboardInterrupt:  # run_chaos tore its cluster down on the way out
        print(f"interrupted: no verdict; the history so far is in {config.output}",
              file=sys.stderr)
        return 130
    print(render_table(result.report))
    print(f"ops {result.ops}  faults {result.faults}  report {result.output / 'report.json'}")
    for line in result.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    return 0 if result.valid else 1


def main(argv: list[str] | None = None) -> int:
    """`python -m chaos.cli_run run ...` (the same as `rafka chaos run ...`)."""
    parser = argparse.ArgumentParser(prog="rafka chaos")
    add_run_parser(parser.add_subparsers(dest="action", required=True))
    args = parser.parse_args(argv)
    return int(args.run(args, None))


if __name__ == "__main__":
    sys.exit(main())
