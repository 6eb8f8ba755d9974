"""`rafka cluster info`, `rafka quorum describe` and `rafka leader elect`.

- cluster info (rpk cluster info): cluster id and the active controller's id (controllers are
  a separate quorum, not brokers, so no broker row is starred), BROKERS, and TOPICS with
  partition counts and offline (leaderless) partitions.
- quorum describe (kafka-metadata-quorum.sh): `--status` gives ClusterId, LeaderId,
  LeaderEpoch, HighWatermark, MaxFollowerLag, MaxFollowerLagTimeMs, CurrentVoters,
  CurrentObservers; `--replication` the table NodeId LogEndOffset Lag LastFetchTimestamp
  LastCaughtUpTimestamp Status; neither flag: both.
- leader elect (kafka-leader-election.sh): preferred or unclean, for `--topic T --partition P`
  or `--all-topic-partitions`; ELECTION_NOT_NEEDED is not a failure.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from cluster.cli_common import CliError, make_admin
from cluster.cli_output import Output

QUORUM_COLUMNS = [
    ("NodeId", "node_id"), ("LogEndOffset", "log_end_offset"), ("Lag", "lag"),
    ("LastFetchTimestamp", "last_fetch_timestamp"),
    ("LastCaughtUpTimestamp", "last_caught_up_timestamp"), ("Status", "status"),
]


def add_info(cluster_actions: Any, parent: argparse.ArgumentParser) -> None:
    p = cluster_actions.add_parser("info", parents=[parent],
                                   help="brokers, controller and topics (rpk cluster info)")
    p.add_argument("-i", "--internal", action="store_true", help="include internal topics")
    p.set_defaults(run=cluster_info)


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    quorum = commands.add_parser("quorum", help="the metadata (controller) quorum")
    actions = quorum.add_subparsers(dest="action", required=True)
    p = actions.add_parser("describe", parents=[parent],
                           help="leader, epoch, high watermark and replica lag")
    p.add_argument("--status", action="store_true", help="only the summary")
    p.add_argument("--replication", action="store_true", help="only the replica table")
    p.add_argument("--human-readable", action="store_true",
                   help="timestamps as 'N ms ago' instead of epoch ms")
    p.set_defaults(run=quorum_describe)

    leader = commands.add_parser("leader", help="partition leadership")
    actions = leader.add_subparsers(dest="action", required=True)
    p = actions.add_parser("elect", parents=[parent], help="run leader election")
    p.add_argument("--election-type", "--type", dest="election_type",
                   type=str.lower, choices=("preferred", "unclean"), default="preferred")
    p.add_argument("--topic", default=None)
    p.add_argument("--partition", type=int, action="append", default=None)
    p.add_argument("--all-topic-partitions", "--all", dest="all", action="store_true")
    p.set_defaults(run=leader_elect)


def cluster_info(args: argparse.Namespace, out: Output) -> int:
    with make_admin(args) as admin:
        cluster = admin.describe_cluster()
        topics = admin.describe_topics(None)
    out.pairs("cluster", [("CLUSTER", cluster.cluster_id),
                          ("CONTROLLER", cluster.controller_id)],
              json_value={"cluster_id": cluster.cluster_id,
                          "controller_id": cluster.controller_id})
    out.line()
    out.table("brokers", [("ID", "node_id"), ("HOST", "host"), ("PORT", "port"),
                          ("RACK", "rack")],
              [{"node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack}
               for b in cluster.brokers], title="BROKERS")
    out.line()
    out.table("topics", [("NAME", "name"), ("PARTITIONS", "partitions"),
                         ("REPLICAS", "replicas"), ("OFFLINE", "offline")],
              [{"name": t.name, "partitions": len(t.partitions),
                "replicas": len(t.partitions[0].replicas) if t.partitions else 0,
                "offline": sum(1 for p in t.partitions if p.leader is None)}
               for t in topics.values() if args.internal or not t.internal], title="TOPICS")
    return 0


def quorum_rows(info: Any, now_ms: int | None = None) -> list[dict[str, Any]]:
    """The --replication rows: leader first, then followers, then observers. With `now_ms`
    the timestamps become "N ms ago" (--human-readable)."""
    def when(ts: int) -> Any:
        if ts < 0:
            return None
        return ts if now_ms is None else f"{max(now_ms - ts, 0)} ms ago"

    rows = []
    voters = sorted(info.voters, key=lambda v: (v.replica_id != info.leader_id, v.replica_id))
    for status, replicas in (("Voter", voters), ("Observer", info.observers)):
        for r in replicas:
            role = ("Observer" if status == "Observer"
                    else "Leader" if r.replica_id == info.leader_id else "Follower")
            rows.append({"node_id": r.replica_id, "log_end_offset": r.log_end_offset,
                         "lag": r.lag, "last_fetch_timestamp": when(r.last_fetch_timestamp),
                         "last_caught_up_timestamp": when(r.last_caught_up_timestamp),
                         "status": role})
    return rows


def max_follower_lag_time_ms(info: Any) -> int:
    """Kafka's MaxFollowerLagTimeMs: the leader's last caught-up time minus that of the
    follower with the largest lag (0 when that is the leader, -1 when unknown)."""
    leader = next((v for v in info.voters if v.replica_id == info.leader_id), None)
    if leader is None or not info.voters:
        return -1
    worst = max(info.voters, key=lambda v: (v.lag, v.replica_id != info.leader_id))
    if worst.replica_id == leader.replica_id or worst.lag == 0:
        return 0
    if leader.last_caught_up_timestamp < 0 or worst.last_caught_up_timestamp < 0:
        return -1
    return max(leader.last_caught_up_timestamp - worst.last_caught_up_timestamp, 0)


def quorum_describe(args: argparse.Namespace, out: Output) -> int:
    with make_admin(args) as admin:
        info = admin.describe_quorum()
        cluster_id = admin.describe_cluster().cluster_id
    both = not args.status and not args.replication
    if args.status or both:
        out.pairs("status", [
            ("ClusterId", cluster_id), ("LeaderId", info.leader_id),
            ("LeaderEpoch", info.leader_epoch), ("HighWatermark", info.high_watermark),
            ("MaxFollowerLag", info.max_follower_lag),
            ("MaxFollowerLagTimeMs", max_follower_lag_time_ms(info)),
            ("CurrentVoters", "[" + ",".join(str(v.replica_id) for v in info.voters) + "]"),
            ("CurrentObservers",
             "[" + ",".join(str(o.replica_id) for o in info.observers) + "]"),
        ], json_value={
            "cluster_id": cluster_id, "leader_id": info.leader_id,
            "leader_epoch": info.leader_epoch, "high_watermark": info.high_watermark,
            "max_follower_lag": info.max_follower_lag,
            "max_follower_lag_time_ms": max_follower_lag_time_ms(info),
            "current_voters": [v.replica_id for v in info.voters],
            "current_observers": [o.replica_id for o in info.observers]})
    if both:
        out.line()
    if args.replication or both:
        now = int(time.time() * 1000) if args.human_readable else None
        out.table("replication", QUORUM_COLUMNS, quorum_rows(info, now))
    return 0


def leader_elect(args: argparse.Namespace, out: Output) -> int:
    from clients.types import TopicPartition
    from proto.errors import ErrorCode

    if args.all == (args.topic is not None):
        raise CliError("give either --all-topic-partitions or --topic T [--partition P]")
    partitions = None
    with make_admin(args) as admin:
        if args.topic is not None:
            parts = args.partition or [
                p.partition for p in admin.describe_topics([args.topic])[args.topic].partitions]
            partitions = [TopicPartition(args.topic, p) for p in parts]
        results = admin.elect_leaders(args.election_type, partitions)
    rows = []
    failed = False
    for tp, err in sorted(results.items()):
        code = getattr(err, "code", None)
        if err is None:
            status = "ELECTED"
        elif code == ErrorCode.ELECTION_NOT_NEEDED:
            status = "NOT-NEEDED"
        else:
            status = f"{getattr(err, 'name', type(err).__name__)}: {getattr(err, 'message', err)}"
            failed = True
        rows.append({"topic": tp.topic, "partition": tp.partition, "status": status})
    if not rows and args.all and not out.json:
        out.line("No election needed: every partition is led by its preferred replica."
                 if args.election_type == "preferred" else "No partition needed an election.")
    else:
        out.table("partitions", [("TOPIC", "topic"), ("PARTITION", "partition"),
                                 ("STATUS", "status")], rows)
    return 1 if failed else 0
