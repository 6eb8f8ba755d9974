"""`rafka topic create|list|describe|delete|alter-config|add-partitions` (rpk / kafka-topics).

Multi-item commands print one TOPIC/STATUS row per item and exit 1 if any failed.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from cluster.cli_common import CliError, make_admin, parse_pairs
from cluster.cli_output import Output

STATUS_COLUMNS = [("TOPIC", "topic"), ("STATUS", "status")]


def register(commands: Any, parent: argparse.ArgumentParser) -> argparse.ArgumentParser:
    topic = commands.add_parser("topic", help="create, inspect and change topics")
    actions = topic.add_subparsers(dest="action", required=True)

    p = actions.add_parser("create", parents=[parent], help="create topics")
    p.add_argument("topics", nargs="+", metavar="TOPIC")
    p.add_argument("-p", "--partitions", type=int, default=-1,
                   help="partitions (default: the broker's num.partitions)")
    p.add_argument("-r", "--replication-factor", type=int, default=-1,
                   help="replicas (default: the broker's default.replication.factor)")
    p.add_argument("-c", "--config", action="append", default=[], metavar="KEY=VALUE",
                   help="topic config (repeatable)")
    p.add_argument("--if-not-exists", action="store_true", help="an existing topic is fine")
    p.add_argument("-d", "--dry", "--validate-only", dest="dry", action="store_true",
                   help="validate only, create nothing")
    p.set_defaults(run=create)

    p = actions.add_parser("list", parents=[parent], help="list topics")
    p.add_argument("-i", "--internal", action="store_true", help="include internal topics")
    p.add_argument("-r", "--regex", default=None, help="only names matching this regex")
    p.set_defaults(run=list_topics)

    p = actions.add_parser("describe", parents=[parent],
                           help="partitions (leader, replicas, ISR, offline) and configs")
    p.add_argument("topics", nargs="+", metavar="TOPIC")
    p.add_argument("-c", "--print-configs", action="store_true", help="also the configs")
    p.add_argument("--under-replicated-partitions", action="store_true",
                   help="only partitions whose ISR is smaller than their replicas")
    p.add_argument("--unavailable-partitions", action="store_true",
                   help="only partitions without a leader")
    p.set_defaults(run=describe)

    p = actions.add_parser("delete", parents=[parent], help="delete topics")
    p.add_argument("topics", nargs="+", metavar="TOPIC")
    p.set_defaults(run=delete)

    p = actions.add_parser("alter-config", parents=[parent],
                           help="set or delete topic configs (incremental)")
    p.add_argument("topics", nargs="+", metavar="TOPIC")
    p.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-d", "--delete", action="append", default=[], metavar="KEY",
                   help="back to the default")
    p.add_argument("--dry", action="store_true", help="validate only")
    p.set_defaults(run=alter_config)

    p = actions.add_parser("add-partitions", parents=[parent], help="grow topics")
    p.add_argument("topics", nargs="+", metavar="TOPIC")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("-n", "--num", type=int, help="partitions to add")
    how.add_argument("--total", type=int, help="partition count to grow to")
    p.set_defaults(run=add_partitions)
    return actions


def _status_rows(results: dict[str, BaseException | None], ok: str = "OK") -> list[dict[str, Any]]:
    return [{"topic": name, "status": ok if err is None else _error_text(err),
             "error": None if err is None else _error_text(err)}
            for name, err in results.items()]


def _error_text(err: BaseException) -> str:
    name = getattr(err, "name", None)
    message = getattr(err, "message", None) or str(err)
    return f"{name}: {message}" if name else message


def _finish(out: Output, results: dict[str, BaseException | None], ok: str = "OK") -> int:
    out.table("topics", STATUS_COLUMNS, _status_rows(results, ok))
    return 1 if any(err is not None for err in results.values()) else 0


def create(args: argparse.Namespace, out: Output) -> int:
    from clients.types import NewTopic

    config = parse_pairs(args.config, "--config")
    topics = [NewTopic(t, args.partitions, args.replication_factor, config=config or None)
              for t in args.topics]
    with make_admin(args) as admin:
        results = admin.create_topics(topics, if_not_exists=args.if_not_exists,
                                      validate_only=args.dry, return_exceptions=True)
    return _finish(out, results, "VALID" if args.dry else "OK")


def list_topics(args: argparse.Namespace, out: Output) -> int:
    with make_admin(args) as admin:
        described = admin.describe_topics(None)
    pattern = re.compile(args.regex) if args.regex else None
    rows = [{"name": d.name, "partitions": len(d.partitions),
             "replicas": len(d.partitions[0].replicas) if d.partitions else 0,
             "internal": d.internal}
            for d in described.values()
            if (args.internal or not d.internal)
            and (pattern is None or pattern.search(d.name))]
    out.table("topics", [("NAME", "name"), ("PARTITIONS", "partitions"),
                         ("REPLICAS", "replicas")], rows)
    return 0


def partition_status(info: Any) -> str:
    """offline (no leader), under-replicated (ISR < replicas) or ok."""
    if info.leader is None:
        return "offline"
    if len(info.isr) < len(info.replicas):
        return "under-replicated"
    return "ok"


def describe(args: argparse.Namespace, out: Output) -> int:
    from clients.admin import ConfigResource, ConfigResourceType

    with make_admin(args) as admin:
        described = admin.describe_topics(args.topics)
        configs = (admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in described])
            if args.print_configs else {})
    docs = []
    for index, (name, d) in enumerate(described.items()):
        parts = [{"partition": p.partition, "leader": p.leader, "leader_epoch": p.leader_epoch,
                  "replicas": list(p.replicas), "isr": list(p.isr),
                  "offline_replicas": list(p.offline_replicas), "status": partition_status(p)}
                 for p in d.partitions
                 if (not args.under_replicated_partitions or len(p.isr) < len(p.replicas))
                 and (not args.unavailable_partitions or p.leader is None)]
        entries = next((v for k, v in configs.items() if k.name == name), None)
        config_rows = [{"name": e.name, "value": e.value, "source": _source_name(e.source)}
                       for e in (entries or {}).values()]
        summary = {"name": name, "topic_id": d.topic_id, "partition_count": len(d.partitions),
                   "replication_factor": len(d.partitions[0].replicas) if d.partitions else 0,
                   "internal": d.internal,
                   "offline": sum(1 for p in d.partitions if p.leader is None)}
        if out.json:
            docs.append({**summary, "partitions": parts,
                         **({"configs": config_rows} if entries is not None else {})})
            continue
        if index:
            out.line()
        out.pairs(name, [("NAME", name), ("ID", d.topic_id),
                         ("PARTITIONS", summary["partition_count"]),
                         ("REPLICAS", summary["replication_factor"]),
                         ("INTERNAL", d.internal), ("OFFLINE", summary["offline"])])
        if entries is not None:
            out.line()
            out.table("configs", [("KEY", "name"), ("VALUE", "value"), ("SOURCE", "source")],
                      config_rows)
        out.line()
        out.table("partitions", [
            ("PARTITION", "partition"), ("LEADER", "leader"), ("EPOCH", "leader_epoch"),
            ("REPLICAS", "replicas"), ("ISR", "isr"), ("OFFLINE-REPLICAS", "offline_replicas"),
            ("STATUS", "status")], parts)
    out.value("topics", docs)
    return 0


def _source_name(source: int) -> str:
    from proto import common_pb2

    name: str = common_pb2.ConfigSource.Name(source)
    return name.removeprefix("CONFIG_SOURCE_")


def delete(args: argparse.Namespace, out: Output) -> int:
    with make_admin(args) as admin:
        results = admin.delete_topics(args.topics, return_exceptions=True)
    return _finish(out, results)


def alter_config(args: argparse.Namespace, out: Output) -> int:
    from clients.admin import ConfigResource, ConfigResourceType

    changes: dict[str, str | None] = dict(parse_pairs(args.set, "--set"))
    for key in args.delete:
        changes[key] = None
    if not changes:
        raise CliError("nothing to change: give --set KEY=VALUE and/or --delete KEY")
    results: dict[str, BaseException | None] = {}
    with make_admin(args) as admin:
        for topic in args.topics:  # one call per topic: a status per topic
            try:
                admin.incremental_alter_configs(
                    {ConfigResource(ConfigResourceType.TOPIC, topic): changes},
                    validate_only=args.dry)
                results[topic] = None
            except Exception as exc:  # noqa: BLE001 - reported per topic
                results[topic] = exc
    return _finish(out, results, "VALID" if args.dry else "OK")


def add_partitions(args: argparse.Namespace, out: Output) -> int:
    with make_admin(args) as admin:
        counts: dict[str, int] = {}
        if args.total is not None:
            counts = {t: args.total for t in args.topics}
        else:
            described = admin.describe_topics(args.topics)
            counts = {t: len(described[t].partitions) + args.num for t in args.topics}
        results = admin.create_partitions(counts, return_exceptions=True)
    return _finish(out, results)
