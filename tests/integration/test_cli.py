"""The `rafka` CLI through its real entry point (`.venv/bin/rafka`, a subprocess) against a
LocalCluster of Ray actors (3 controllers + 3 brokers), shared by the tests of this module.

The commands find the cluster through its cluster.json (`--data-dir`), as a user's would after
`rafka cluster up`, except where a test passes --bootstrap-servers on purpose.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.cli_common import BOOTSTRAP_ENV
from cluster.launcher import LocalCluster, unique_name

TIMEOUT_S = 120


def _entry_point() -> list[str]:
    script = Path(sys.executable).parent / "rafka"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cluster.cli"]


class Cli:
    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        assert cluster.data_dir is not None
        self.data_dir = str(cluster.data_dir)
        self.env = {k: v for k, v in os.environ.items() if k != BOOTSTRAP_ENV}

    def run(self, *argv: str, stdin: str = "", expect: int | None = 0,
            connect: bool = True) -> subprocess.CompletedProcess[str]:
        args = [*_entry_point(), *argv]
        if connect:
            args += ["--data-dir", self.data_dir]
        done = subprocess.run(args, input=stdin, capture_output=True, text=True,
                              timeout=TIMEOUT_S, env=self.env)
        if expect is not None:
            assert done.returncode == expect, (argv, done.returncode, done.stdout, done.stderr)
        return done

    def json(self, *argv: str, **kw: Any) -> Any:
        return json.loads(self.run(*argv, "--format", "json", **kw).stdout)


@pytest.fixture(scope="module")
def cli(ray_session: None) -> Iterator[Cli]:
    cluster = LocalCluster(
        brokers=3, controllers=3, name=unique_name("cli"), log_level="WARNING",
        broker_config={"group.initial.rebalance.delay.ms": 0, "offsets.topic.num.partitions": 3})
    try:
        cluster.start()
        yield Cli(cluster)
    finally:
        cluster.close()


def test_topic_create_produce_consume_describe(cli: Cli) -> None:
    done = cli.run("topic", "create", "cli-orders", "-p", "3", "-r", "3",
                   "-c", "retention.ms=3600000")
    assert re.search(r"^cli-orders\s+OK$", done.stdout, re.M), done.stdout
    again = cli.run("topic", "create", "cli-orders", "-p", "3", expect=1)
    assert "TOPIC_ALREADY_EXISTS" in again.stdout

    lines = "".join(f"k{i}:v{i}\n" for i in range(6))
    produced = cli.run("produce", "cli-orders", "--key-separator", ":", "-H", "src=cli",
                       "--acks", "all", "--compression", "gzip", stdin=lines)
    assert produced.stdout.count("Produced to partition") == 6, produced.stdout

    records = [json.loads(line) for line in cli.run(
        "consume", "cli-orders", "--from-beginning", "-n", "6", "--format", "json",
        "--timeout-ms", "60000").stdout.splitlines()]
    assert sorted((r["key"], r["value"]) for r in records) == [
        (f"k{i}", f"v{i}") for i in range(6)]
    assert all(r["headers"] == [["src", "cli"]] and r["timestamp"] > 0 for r in records)

    text = cli.run("consume", "cli-orders", "--from-beginning", "-n", "6",
                   "--timeout-ms", "60000").stdout
    assert re.search(r"^CreateTime:\d+\tPartition:\d\tOffset:\d+\tsrc:cli\tk0\tv0$", text, re.M)

    [described] = cli.json("topic", "describe", "cli-orders", "-c")
    assert (described["name"], described["partition_count"], described["offline"]) == (
        "cli-orders", 3, 0)
    partitions = described["partitions"]
    assert [p["partition"] for p in partitions] == [0, 1, 2]
    assert all(p["leader"] in (1, 2, 3) and sorted(p["replicas"]) == [1, 2, 3]
               for p in partitions)
    configs = {c["name"]: c for c in described["configs"]}
    assert configs["retention.ms"]["value"] == "3600000"

    listed = cli.json("topic", "list")
    assert {"name": "cli-orders", "partitions": 3, "replicas": 3, "internal": False} in listed


def test_group_consume_describe_reset_delete(cli: Cli) -> None:
    cli.run("topic", "create", "cli-group", "-p", "2", "-r", "3")
    cli.run("produce", "cli-group", "-q", stdin="".join(f"r{i}\n" for i in range(8)))
    consumed = cli.run("consume", "cli-group", "--group", "cli-g", "--from-beginning",
                       "-n", "8", "--value-only", "--timeout-ms", "60000")
    assert sorted(consumed.stdout.split()) == sorted(f"r{i}" for i in range(8))

    groups = {g["group_id"]: g for g in cli.json("group", "list")}
    assert groups["cli-g"]["protocol_type"] == "consumer"

    [described] = cli.json("group", "describe", "cli-g")
    assert (described["group"], described["total_lag"]) == ("cli-g", 0)
    rows = described["partitions"]
    assert sum(r["current_offset"] for r in rows) == 8
    assert all(r["lag"] == 0 and r["log_end_offset"] == r["current_offset"] for r in rows)
    text = cli.run("group", "describe", "cli-g").stdout
    assert "GROUP  TOPIC" in text and "CURRENT-OFFSET  LOG-END-OFFSET  LAG  CONSUMER-ID" in text

    dry = cli.json("group", "reset-offsets", "cli-g", "--topic", "cli-group", "--to-earliest")
    assert [r["new_offset"] for r in dry] == [0, 0]
    after_dry = cli.json("group", "describe", "cli-g")[0]["partitions"]
    assert sum(r["current_offset"] for r in after_dry) == 8  # a dry run changes nothing
    cli.run("group", "reset-offsets", "cli-g", "--all-topics", "--to-earliest", "--execute")
    reset = cli.json("group", "describe", "cli-g")[0]["partitions"]
    assert [r["current_offset"] for r in reset] == [0, 0]
    assert sum(r["lag"] for r in reset) == 8

    deleted = cli.run("group", "delete", "cli-g")
    assert re.search(r"^cli-g\s+OK$", deleted.stdout, re.M)
    missing = cli.run("group", "delete", "cli-g", expect=1)
    assert "GROUP_ID_NOT_FOUND" in missing.stdout


def test_cluster_info_quorum_and_leader_election(cli: Cli) -> None:
    info = cli.json("cluster", "info")
    assert [b["node_id"] for b in info["brokers"]] == [1, 2, 3]
    assert info["cluster"]["controller_id"] in (1, 2, 3)

    quorum = cli.json("quorum", "describe")
    assert quorum["status"]["leader_id"] in (1, 2, 3)
    assert quorum["status"]["current_voters"] == [1, 2, 3]
    statuses = sorted(r["status"] for r in quorum["replication"])
    assert statuses.count("Leader") == 1 and statuses.count("Follower") == 2
    text = cli.run("quorum", "describe", "--replication").stdout
    assert text.splitlines()[0].split() == [
        "NodeId", "LogEndOffset", "Lag", "LastFetchTimestamp", "LastCaughtUpTimestamp", "Status"]

    cli.run("leader", "elect", "--all-topic-partitions")
    cli.run("leader", "elect", expect=1)  # neither --all nor --topic


def test_explicit_bootstrap_and_perf(cli: Cli) -> None:
    servers = cli.cluster.bootstrap_servers
    cli.run("topic", "create", "cli-perf", "-p", "1", "-r", "1", "--bootstrap-server", servers,
            connect=False)
    produced = cli.run("perf", "produce", "--topic", "cli-perf", "--num-records", "500",
                       "--record-size", "50", "--no-limit", "--bootstrap-servers", servers,
                       connect=False)
    assert re.search(r"^500 records sent, [\d.]+ records/sec \([\d.]+ MB/sec\), [\d.]+ ms avg "
                     r"latency, [\d.]+ ms max latency, \d+ ms 50th, \d+ ms 95th, \d+ ms 99th, "
                     r"\d+ ms 99.9th\.$", produced.stdout, re.M), produced.stdout
    consumed = cli.run("perf", "consume", "--topic", "cli-perf", "--messages", "500",
                       "--timeout", "60000")
    header, row = consumed.stdout.splitlines()[:2]
    assert header.startswith("start.time, end.time, data.consumed.in.MB")
    assert row.split(", ")[4] == "500"

    unreachable = cli.run("topic", "list", "--bootstrap-servers", "127.0.0.1:1",
                          "-X", "default.api.timeout.ms=1500", "-X", "request.timeout.ms=500",
                          connect=False, expect=1)
    assert unreachable.stderr.startswith("error:")


def test_live_member_is_described_and_blocks_reset(cli: Cli) -> None:
    import signal
    import time

    cli.run("topic", "create", "cli-live", "-p", "2", "-r", "3")
    member = subprocess.Popen(
        [*_entry_point(), "consume", "cli-live", "--group", "cli-live-g", "--data-dir",
         cli.data_dir, "-X", "client.id=live-console"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli.env)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            done = cli.run("group", "describe", "cli-live-g", "--format", "json", expect=None)
            if done.returncode == 0:
                [doc] = json.loads(done.stdout)
                if doc["state"] == "Stable":
                    break
            assert time.monotonic() < deadline, "the console consumer never joined"
            time.sleep(0.2)
        assert doc["members"] == 1 and doc["protocol"]
        rows = doc["partitions"]
        assert {r["client_id"] for r in rows} == {"live-console"}
        assert all(r["consumer_id"] and r["host"] for r in rows)
        assert sorted(r["partition"] for r in rows) == [0, 1]

        refused = cli.run("group", "reset-offsets", "cli-live-g", "--all-topics",
                          "--to-earliest", "--execute", expect=1)
        assert "can only be reset if the group 'cli-live-g' is inactive" in refused.stderr
    finally:
        member.send_signal(signal.SIGINT)
        try:
            member.wait(30)
        except subprocess.TimeoutExpired:
            member.kill()
            member.wait(10)
    assert member.returncode == 0, member.stderr.read() if member.stderr else ""
