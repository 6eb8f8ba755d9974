"""`rafka demo --cluster`: a whole Rafka cluster end to end through the Python API.

Launches `LocalCluster(brokers=3, controllers=3)` (Ray actors on this machine, a temp data dir),
creates a topic with replication factor 3, produces a few records with the `Producer`
(acks=all, idempotent), reads them back with the `Consumer` (assign + seek_to_beginning),
prints them, and tears everything down. A composition root for the CLI: it may read the clock.
"""

from __future__ import annotations

import time
from typing import Any

from clients import Admin, Consumer, NewTopic, Producer, TopicPartition
from cluster.launcher import LocalCluster, unique_name

TOPIC = "orders"
PARTITIONS = 3
RECORDS = [(f"customer-{i % 4}", f"order {i}: {qty} x widget") for i, qty in
           enumerate((3, 1, 4, 1, 5, 9, 2, 6))]


def run_cluster_demo(timeout_s: float = 30.0) -> int:
    """Run the demo; returns the process exit code (0 when every record came back)."""
    started = time.monotonic()
    print("Rafka cluster demo: 3 controllers + 3 brokers as Ray actors on this machine")
    with LocalCluster(brokers=3, controllers=3, name=unique_name("demo"),
                      log_level="WARNING") as cluster:
        print(f"cluster up in {time.monotonic() - started:.1f}s; "
              f"bootstrap servers {cluster.bootstrap_servers}")
        with Admin(bootstrap_servers=cluster.bootstrap_servers) as admin:
            admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3,
                                          config={"min.insync.replicas": "2"})])
            for p in admin.describe_topics([TOPIC])[TOPIC].partitions:
                print(f"  {TOPIC}-{p.partition}: leader {p.leader}, replicas "
                      f"{list(p.replicas)}, isr {list(p.isr)}")
        with Producer(bootstrap_servers=cluster.bootstrap_servers, acks="all",
                      key_serializer=str.encode, value_serializer=str.encode) as producer:
            futures = [producer.send(TOPIC, value, key=key) for key, value in RECORDS]
            producer.flush()
            for (key, _), future in zip(RECORDS, futures, strict=True):
                meta = future.result()
                print(f"produced key={key} -> {meta.topic}-{meta.partition}@{meta.offset}")
        tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        got: list[Any] = []
        with Consumer(bootstrap_servers=cluster.bootstrap_servers,
                      key_deserializer=bytes.decode, value_deserializer=bytes.decode) as consumer:
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            deadline = time.monotonic() + timeout_s
            while len(got) < len(RECORDS) and time.monotonic() < deadline:
                got.extend(consumer.poll(0.5))
        for record in sorted(got, key=lambda r: (r.partition, r.offset)):
            print(f"consumed {record.topic}-{record.partition}@{record.offset} "
                  f"key={record.key} value={record.value!r}")
        ok = sorted((r.key, r.value) for r in got) == sorted(RECORDS)
        print(f"{len(got)} of {len(RECORDS)} records read back: {'OK' if ok else 'MISMATCH'}")
    print(f"cluster torn down; demo took {time.monotonic() - started:.1f}s")
    return 0 if ok else 1
