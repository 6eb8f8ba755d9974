"""`rafka group list|describe|reset-offsets|delete` (kafka-consumer-groups / rpk group).

describe prints Kafka's columns GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG
CONSUMER-ID HOST CLIENT-ID after a summary line per group. reset-offsets follows Kafka:
`--to-earliest | --to-latest | --to-current | --to-offset N | --shift-by ±N |
--to-datetime ISO`, scope `--all-topics | --topic T[:P,P...]`, a dry run unless `--execute`;
only a group without active members (Empty or Dead) can be reset.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any

from cluster.cli_common import CliError, make_admin
from cluster.cli_output import Output

LAG_COLUMNS = [
    ("GROUP", "group"), ("TOPIC", "topic"), ("PARTITION", "partition"),
    ("CURRENT-OFFSET", "current_offset"), ("LOG-END-OFFSET", "log_end_offset"),
    ("LAG", "lag"), ("CONSUMER-ID", "consumer_id"), ("HOST", "host"),
    ("CLIENT-ID", "client_id"),
]
INACTIVE_STATES = ("Empty", "Dead")


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    group = commands.add_parser("group", help="consumer groups: lag, offsets, deletion")
    actions = group.add_subparsers(dest="action", required=True)

    p = actions.add_parser("list", parents=[parent], help="list groups")
    p.add_argument("--state", action="append", default=[],
                   help="only groups in this state (repeatable)")
    p.set_defaults(run=list_groups)

    p = actions.add_parser("describe", parents=[parent], help="members, offsets and lag")
    p.add_argument("groups", nargs="+", metavar="GROUP")
    p.set_defaults(run=describe)

    p = actions.add_parser("reset-offsets", parents=[parent],
                           help="move a group's committed offsets (dry run unless --execute)")
    p.add_argument("group", metavar="GROUP")
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--all-topics", action="store_true",
                       help="every topic the group has offsets for")
    scope.add_argument("--topic", action="append", metavar="TOPIC[:P,P...]")
    spec = p.add_mutually_exclusive_group(required=True)
    spec.add_argument("--to-earliest", action="store_true")
    spec.add_argument("--to-latest", action="store_true")
    spec.add_argument("--to-current", action="store_true")
    spec.add_argument("--to-offset", type=int, metavar="N")
    spec.add_argument("--shift-by", type=int, metavar="N")
    spec.add_argument("--to-datetime", metavar="YYYY-MM-DDTHH:mm:SS.sss",
                      help="first offset at or after this time (UTC unless it has a zone)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="show the plan (the default)")
    mode.add_argument("--execute", action="store_true", help="commit the new offsets")
    p.set_defaults(run=reset_offsets)

    p = actions.add_parser("delete", parents=[parent], help="delete groups without members")
    p.add_argument("groups", nargs="+", metavar="GROUP")
    p.set_defaults(run=delete)


def list_groups(args: argparse.Namespace, out: Output) -> int:
    with make_admin(args) as admin:
        groups = admin.list_consumer_groups(states=args.state)
    out.table("groups", [("GROUP", "group_id"), ("COORDINATOR", "coordinator_id"),
                         ("STATE", "state"), ("PROTOCOL-TYPE", "protocol_type")],
              [{"group_id": g.group_id, "coordinator_id": g.coordinator_id, "state": g.state,
                "protocol_type": g.protocol_type} for g in groups])
    return 0


def lag_rows(group_id: str, lags: list[Any], description: Any) -> list[dict[str, Any]]:
    """Kafka's describe rows: one per partition, then members that own nothing."""
    rows = [{"group": group_id, "topic": r.topic, "partition": r.partition,
             "current_offset": r.current_offset, "log_end_offset": r.log_end_offset,
             "lag": r.lag, "consumer_id": r.member.member_id if r.member else None,
             "host": r.member.host if r.member else None,
             "client_id": r.member.client_id if r.member else None} for r in lags]
    for m in description.members:
        if not m.assignment:
            rows.append({"group": group_id, "topic": None, "partition": None,
                         "current_offset": None, "log_end_offset": None, "lag": None,
                         "consumer_id": m.member_id, "host": m.host, "client_id": m.client_id})
    return rows


def describe(args: argparse.Namespace, out: Output) -> int:
    docs = []
    with make_admin(args) as admin:
        for index, group_id in enumerate(args.groups):
            description = admin.describe_consumer_groups([group_id])[group_id]
            lags = admin.consumer_group_lag(group_id)
            rows = lag_rows(group_id, lags, description)
            summary = {"group": group_id, "coordinator_id": description.coordinator_id,
                       "state": description.state, "protocol": description.protocol or None,
                       "members": len(description.members),
                       "total_lag": sum(r.lag or 0 for r in lags)}
            if out.json:
                docs.append({**summary, "partitions": rows})
                continue
            if index:
                out.line()
            out.pairs(group_id, [
                ("GROUP", group_id), ("COORDINATOR", summary["coordinator_id"]),
                ("STATE", summary["state"]), ("BALANCER", summary["protocol"]),
                ("MEMBERS", summary["members"]), ("TOTAL-LAG", summary["total_lag"])])
            out.line()
            if description.state in INACTIVE_STATES and not description.members:
                out.line(f"Consumer group '{group_id}' has no active members.")
                out.line()
            out.table("partitions", LAG_COLUMNS, rows)
    out.value("groups", docs)
    return 0


def parse_scope(items: list[str]) -> list[tuple[str, list[int] | None]]:
    """["t", "u:0,2"] → [("t", None), ("u", [0, 2])].

    Raises:
        CliError: a partition list that is not numbers.
    """
    scope = []
    for item in items:
        topic, _, parts = item.partition(":")
        try:
            scope.append((topic, [int(p) for p in parts.split(",")] if parts else None))
        except ValueError:
            raise CliError(f"--topic {item!r}: partitions must be numbers") from None
    return scope


def parse_datetime(text: str) -> int:
    """An ISO-8601 time (UTC unless it says otherwise) → ms since the epoch.

    Raises:
        CliError: not a time.
    """
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--to-datetime {text!r} is not YYYY-MM-DDTHH:mm:SS[.sss][zone]") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def plan_offset(args: argparse.Namespace, current: int | None, earliest: int, latest: int,
                at_time: int | None) -> int:
    """The new offset of one partition, clamped to [earliest, latest] as Kafka does."""
    if args.to_earliest:
        target = earliest
    elif args.to_latest:
        target = latest
    elif args.to_current:
        target = latest if current is None else current
    elif args.to_offset is not None:
        target = args.to_offset
    elif args.shift_by is not None:
        target = (latest if current is None else current) + args.shift_by
    else:
        target = latest if at_time is None or at_time < 0 else at_time
    return min(max(target, earliest), latest)


def reset_offsets(args: argparse.Namespace, out: Output) -> int:
    from clients.types import TopicPartition

    with make_admin(args) as admin:
        description = admin.describe_consumer_groups([args.group])[args.group]
        if args.execute and description.state not in INACTIVE_STATES:
            raise CliError(
                f"Assignments can only be reset if the group '{args.group}' is inactive, "
                f"but the current state is {description.state}.")
        committed = admin.list_consumer_group_offsets(args.group)
        if args.all_topics:
            tps = sorted(committed)
        else:
            tps = []
            for topic, parts in parse_scope(args.topic):
                if parts is None:
                    parts = [p.partition for p in
                             admin.describe_topics([topic])[topic].partitions]
                tps += [TopicPartition(topic, p) for p in parts]
        if not tps:
            raise CliError(f"group {args.group} has no offsets to reset")
        earliest = admin.list_offsets({tp: "earliest" for tp in tps})
        latest = admin.list_offsets({tp: "latest" for tp in tps})
        at_time = (admin.list_offsets({tp: parse_datetime(args.to_datetime) for tp in tps})
                   if args.to_datetime else {})
        plan = {tp: plan_offset(args, committed[tp].offset if tp in committed else None,
                                earliest[tp].offset, latest[tp].offset,
                                at_time[tp].offset if tp in at_time else None)
                for tp in tps}
        results: dict[Any, BaseException | None] = {tp: None for tp in plan}
        if args.execute:
            results = admin.alter_consumer_group_offsets(args.group, plan,
                                                         return_exceptions=True)
    if not args.execute:
        out.line("(dry run: add --execute to commit these offsets)")
    rows = [{"group": args.group, "topic": tp.topic, "partition": tp.partition,
             "new_offset": offset,
             "error": None if results.get(tp) is None else str(results[tp])}
            for tp, offset in sorted(plan.items())]
    columns = [("GROUP", "group"), ("TOPIC", "topic"), ("PARTITION", "partition"),
               ("NEW-OFFSET", "new_offset")]
    if any(r["error"] for r in rows):
        columns.append(("ERROR", "error"))
    out.table("offsets", columns, rows)
    return 1 if any(r["error"] for r in rows) else 0


def delete(args: argparse.Namespace, out: Output) -> int:
    with make_admin(args) as admin:
        results = admin.delete_consumer_groups(args.groups, return_exceptions=True)
    rows = [{"group": g, "status": "OK" if err is None else
             f"{getattr(err, 'name', type(err).__name__)}: {getattr(err, 'message', err)}"}
            for g, err in results.items()]
    out.table("groups", [("GROUP", "group"), ("STATUS", "status")], rows)
    return 1 if any(err is not None for err in results.values()) else 0
