"""Consumers in groups against real brokers.

In-process (no Ray, one asyncio loop: 1 controller + 3 brokers, `AsyncConsumer`s): two groups
each receive every record; a joining member rebalances the group so that every partition has
exactly one owner, with the listener called in Kafka's order; cooperative-sticky moves only
the partitions it must; commits, committed() and resuming from them; auto-commit on close; a
graceful leave rebalances quickly; a member that stops polling is removed after
max.poll.interval.ms and later sees its partitions lost; killing the coordinator's broker keeps
the group and its committed offsets; pattern subscriptions and partition growth rebalance; a
static member restarting within its session gets its partitions back without a rebalance;
random joins, leaves and crashes (seeded) skip no record.

With Ray (`ConsumerActor`s and the sync `Consumer` on a LocalCluster): killing a member moves
its partitions within session.timeout.ms; a crashed auto-committing member skips no record
(at-least-once); the sync consumer runs listener callbacks on the caller's thread; an actor
in batch mode skips a failing batch and commits on stop.

Waits are deadline polls; clusters, consumers and actors are closed in `finally`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from clients.admin import AsyncAdmin
from clients.consumer.consumer import AsyncConsumer
from clients.producer.producer import AsyncProducer
from clients.types import NewTopic, TopicPartition
from cluster.broker_runtime import BrokerServer
from controller.control import ControllerConfig
from controller.server import ControllerServer
from proto.broker_config import BrokerConfig
from proto.fault_transport import FaultTable

HEARTBEAT_MS = 200
SESSION_MS = 1500
BOUND_S = 30.0

# Small, fast group timing for the consumers under test.
GROUP_CONFIG: dict[str, Any] = {
    "session_timeout_ms": 2000, "heartbeat_interval_ms": 200,
    "auto_offset_reset": "earliest", "fetch_max_wait_ms": 100,
    "retry_backoff_ms": 50, "request_timeout_ms": 10_000,
}


class InProcessCluster:
    """1 controller + 3 brokers on 127.0.0.1 in this loop; quick group settings."""

    def __init__(self, root: Path, brokers: int = 3) -> None:
        self.root = root
        self.n = brokers
        self.controllers: dict[int, ControllerServer] = {}
        self.voters: dict[int, str] = {}
        self.brokers: dict[int, BrokerServer] = {}
        self.config = BrokerConfig.resolve({
            "broker.heartbeat.interval.ms": HEARTBEAT_MS,
            "broker.session.timeout.ms": SESSION_MS,
            "replica.lag.time.max.ms": 1500, "replica.fetch.wait.max.ms": 200,
            "replica.fetch.backoff.ms": 100, "request.timeout.ms": 8000,
            "offsets.topic.num.partitions": 3, "group.initial.rebalance.delay.ms": 0,
            "group.min.session.timeout.ms": 500,
        })

    async def start(self) -> None:
        config = ControllerConfig(broker_heartbeat_interval_ms=HEARTBEAT_MS,
                                  broker_session_timeout_ms=SESSION_MS)
        self.controllers[1] = ControllerServer(
            1, str(self.root / "controller-1"), config=config, election_timeout_ms=300,
            heartbeat_interval_ms=50, seed=1, faults=FaultTable(), cluster_id="groups-test")
        self.voters[1] = await self.controllers[1].bind()
        await self.controllers[1].start(self.voters)
        for b in range(1, self.n + 1):
            server = BrokerServer(b, str(self.root / "data"), controllers=self.voters,
                                  config=self.config, cluster_id="groups-test",
                                  faults=FaultTable())
            await server.bind()
            self.brokers[b] = server
            await server.start()

    @property
    def bootstrap(self) -> str:
        return ",".join(str(s.address) for s in self.brokers.values())

    async def stop(self) -> None:
        for b in list(self.brokers):
            await self.brokers.pop(b).stop(0.1, controlled=False)
        for server in self.controllers.values():
            await server.stop(grace_s=0.1)


async def until(check: Callable[[], Awaitable[bool]], what: str,
                bound_s: float = BOUND_S) -> None:
    deadline = time.monotonic() + bound_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not true after {bound_s} s")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def cluster_with_topic(tmp_path: Path, topic: str, partitions: int, replication: int = 2
                             ) -> AsyncIterator[InProcessCluster]:
    cluster = InProcessCluster(tmp_path)
    try:
        await cluster.start()
        admin = AsyncAdmin(bootstrap_servers=cluster.bootstrap)
        try:
            async def create() -> bool:
                try:
                    await admin.create_topics([NewTopic(topic, partitions, replication)],
                                              if_not_exists=True)
                    return True
                except Exception:  # noqa: BLE001 - brokers still registering
                    return False
            await until(create, f"create {topic}")

            async def led() -> bool:
                d = (await admin.describe_topics([topic]))[topic]
                return all(p.leader is not None for p in d.partitions)
            await until(led, f"{topic} has leaders")
        finally:
            await admin.close()
        yield cluster
    finally:
        await cluster.stop()


async def produce(bootstrap: str, topic: str, n: int, partitions: int, start: int = 0) -> None:
    producer = AsyncProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, b"v%d" % i, key=b"k%d" % i,
                                       partition=i % partitions)
                   for i in range(start, start + n)]
        await producer.flush(30)
        for f in futures:
            await f
    finally:
        await producer.stop()


class Recorder:
    """A rebalance listener that records the order of calls."""

    def __init__(self, name: str, log: list[tuple[str, str, tuple[TopicPartition, ...]]]) -> None:
        self.name = name
        self.log = log

    def on_partitions_revoked(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        assert set(partitions) <= consumer.assignment()  # still assigned during the callback
        self.log.append((self.name, "revoked", tuple(sorted(partitions))))

    def on_partitions_assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        assert set(partitions) <= consumer.assignment()
        self.log.append((self.name, "assigned", tuple(sorted(partitions))))

    def on_partitions_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.log.append((self.name, "lost", tuple(sorted(partitions))))


def consumer(cluster: InProcessCluster, group: str, **extra: Any) -> AsyncConsumer[Any, Any]:
    return AsyncConsumer(bootstrap_servers=cluster.bootstrap, group_id=group,
                         **{**GROUP_CONFIG, **extra})


async def drain_all(consumers: list[AsyncConsumer[Any, Any]], want: int,
                    seen: dict[int, list[tuple[str, int, int]]] | None = None,
                    bound_s: float = BOUND_S) -> dict[int, list[tuple[str, int, int]]]:
    """Poll every consumer in turn until `want` records arrived in total."""
    got = seen if seen is not None else {i: [] for i in range(len(consumers))}
    deadline = time.monotonic() + bound_s
    while sum(len(v) for v in got.values()) < want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {sum(len(v) for v in got.values())} of {want} records")
        for i, c in enumerate(consumers):
            for r in await c.poll(0.05):
                got[i].append((r.topic, r.partition, r.offset))
    return got


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 120))  # type: ignore[arg-type]


# -- in-process --------------------------------------------------------------------------------


def test_two_groups_each_receive_every_record(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster_with_topic(tmp_path, "events", 3) as cluster:
            await produce(cluster.bootstrap, "events", 60, 3)
            groups = [consumer(cluster, "g-a"), consumer(cluster, "g-b")]
            try:
                for c in groups:
                    c.subscribe(["events"])
                got = await drain_all(groups, 120)
                for i in range(2):
                    assert sorted(got[i]) == sorted(
                        ("events", o % 3, o // 3) for o in range(60)), i
            finally:
                for c in groups:
                    await c.close()
    run(scenario())


def test_joining_member_rebalances_to_exactly_one_owner(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster_with_topic(tmp_path, "orders", 4) as cluster:
            calls: list[tuple[str, str, tuple[TopicPartition, ...]]] = []
            a = consumer(cluster, "g")
            b = consumer(cluster, "g")
            try:
                a.subscribe(["orders"], listener=Recorder("a", calls))
                assert len(await a.wait_for_assignment(BOUND_S)) == 4
                gen1 = a.group_metadata().generation_id
                b.subscribe(["orders"], listener=Recorder("b", calls))

                async def settled() -> bool:
                    await a.poll(0.05)
                    await b.poll(0.05)
                    return (len(a.assignment()) == 2 and len(b.assignment()) == 2
                            and a.group_metadata().generation_id
                            == b.group_metadata().generation_id)
                await until(settled, "a and b share the partitions")
                assert not a.assignment() & b.assignment()
                assert a.assignment() | b.assignment() == {TopicPartition("orders", p)
                                                           for p in range(4)}
                assert a.group_metadata().generation_id > gen1
                # Kafka's order (eager range): a revokes everything, then both get theirs
                a_calls = [c for c in calls if c[0] == "a"]
                assert a_calls[0] == ("a", "assigned", tuple(
                    TopicPartition("orders", p) for p in range(4)))
                assert a_calls[1][1] == "revoked" and len(a_calls[1][2]) == 4
                assert a_calls[2][1] == "assigned" and len(a_calls[2][2]) == 2
                assert a.rebalances >= 2
            finally:
                await a.close()
                await b.close()
    run(scenario())


def test_cooperative_sticky_moves_only_what_it_must(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster_with_topic(tmp_path, "jobs", 6) as cluster:
            calls: list[tuple[str, str, tuple[TopicPartition, ...]]] = []
            cfg = {"partition_assignment_strategy": "cooperative-sticky"}
            a = consumer(cluster, "coop", **cfg)
            b = consumer(cluster, "coop", **cfg)
            try:
                a.subscribe(["jobs"], listener=Recorder("a", calls))
                before = await a.wait_for_assignment(BOUND_S)
                assert len(before) == 6
                b.subscribe(["jobs"], listener=Recorder("b", calls))

                async def settled() -> bool:
                    await a.poll(0.05)
                    await b.poll(0.05)
                    return len(a.assignment()) == 3 and len(b.assignment()) == 3
                await until(settled, "cooperative hand-over")
                after = a.assignment()
                assert after < before  # a kept three of its own and never gave them up
                a_calls = [c for c in calls if c[0] == "a"]
                revoked = [c[2] for c in a_calls if c[1] == "revoked"]
                assert len(revoked) == 1 and set(revoked[0]) == before - after
                assert all(c[1] != "lost" for c in calls)
                assert b.assignment() == before - after
            finally:
                await a.close()
                await b.close()
    run(scenario())


def test_commit_committed_and_resume_from_committed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster_with_topic(tmp_path, "ledger", 2) as cluster:
            await produce(cluster.bootstrap, "ledger", 20, 2)
            c = consumer(cluster, "acct", enable_auto_commit=False)
            try:
                c.subscribe(["ledger"])
                got: list[Any] = []
                while len(got) < 20:
                    got.extend(await c.poll(0.5))
                last0 = max(r for r in got if r.partition == 0)
                await c.commit(last0)  # a record commits offset + 1
                tp0, tp1 = TopicPartition("ledger", 0), TopicPartition("ledger", 1)
                committed = await c.committed([tp0, tp1])
                c0 = committed[tp0]
                assert c0 is not None and c0.offset == last0.offset + 1
                assert committed[tp1] is None
                await c.commit({tp1: 4})
                assert (await c.committed([tp1]))[tp1].offset == 4  # type: ignore[union-attr]
                done = await c.commit_async()
                assert set(done) == {tp0, tp1}
            finally:
                await c.close()
            # a new member starts from the committed offsets
            d = consumer(cluster, "acct", enable_auto_commit=False)
            try:
                d.subscribe(["ledger"])
                await d.wait_for_assignment(BOUND_S)
                assert await d.position(TopicPartition("ledger", 0)) == 10
                assert await d.position(TopicPartition("ledger", 1)) == 10
            finally:
                await d.close()
    run(scenario())


def test_auto_commit_on_close_then_the_next_member_continues(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster_with_topic(tmp_path, "stream", 2) as cluster:
            await produce(cluster.bootstrap, "stream", 10, 2)
            c = consumer(cluster, "auto", auto_commit_interval_ms=100)
            c.subscribe(["stream"])
            got = await drain_all([c], 10)
            await c.close()  # commits the positions
            await produce(cluster.bootstrap, "stream", 10, 2, start=10)
            d = consumer(cluster, "auto")
            try:
                d.subscribe(["stream"])
                rest = await drain_all([d], 10)
                assert not set(rest[0]) & set(got[0])
                assert len(set(rest[0]) | set(got[0])) == 20
            finally:
                await d.close()
    run(scenario())


def test_graceful_leave_rebalances_quickly(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster_with_topic(tmp_path, "fast", 4) as cluster:
            a = consumer(cluster, "leave")
            b = consumer(cluster, "leave")
            try:
                a.subscribe(["fast"])
                b.subscribe(["fast"])

                async def shared() -> bool:
                    await a.poll(0.05)
                    await b.poll(0.05)
                    return len(a.assignment()) == 2 and len(b.assignment()) == 2
                await until(shared, "two members")
                started = time.monotonic()
                await b.close()

                async def alone() -> bool:
                    await a.poll(0.05)
                    return len(a.assignment()) == 4
                await until(alone, "a takes over")
                took = time.monotonic() - started
                print(f"rebalance after a graceful leave: {took * 1000:.0f} ms")
                assert took <= 1.5, took  # target ≤ 1 s; some slack for a busy machine
            finally:
                await a.close()
                await b.close()
    run(scenario())


def test_member_that_stops_polling_leaves_after_max_poll_interval(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster_with_topic(tmp_path, "slow", 2) as cluster:
            calls: list[tuple[str, str, tuple[TopicPartition, ...]]] = []
            a = consumer(cluster, "slowpoke", max_poll_interval_ms=1500)
            b = consumer(cluster, "slowpoke", max_poll_interval_ms=1500)
            try:
                a.subscribe(["slow"], listener=Recorder("a", calls))
                b.subscribe(["slow"])

                async def shared() -> bool:
                    await a.poll(0.05)
                    await b.poll(0.05)
                    return len(a.assignment()) == 1 and len(b.assignment()) == 1
                await until(shared, "two members")
                # a stops polling: its heartbeat task leaves the group after 1.5 s, b gets all
                async def b_alone() -> bool:
                    await b.poll(0.05)
                    return len(b.assignment()) == 2
                await until(b_alone, "b takes over")
                # a's next poll reports its partitions lost (not revoked) and rejoins
                async def a_lost() -> bool:
                    await a.poll(0.05)
                    return any(c[1] == "lost" for c in calls)
                await until(a_lost, "a's partitions reported lost")
                assert not any(c[1] == "revoked" for c in calls)  # lost, never revoked
            finally:
                await a.close()
                await b.close()
    run(scenario())


def test_killing_the_coordinator_keeps_the_group_and_its_offsets(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster_with_topic(tmp_path, "payments", 4, replication=3) as cluster:
            await produce(cluster.bootstrap, "payments", 40, 4)
            a = consumer(cluster, "pay", enable_auto_commit=False)
            b = consumer(cluster, "pay", enable_auto_commit=False)
            try:
                a.subscribe(["payments"])
                b.subscribe(["payments"])
                got = await drain_all([a, b], 40)
                await a.commit()
                await b.commit()
                tps = [TopicPartition("payments", p) for p in range(4)]
                before = await a.committed(tps)
                assert all(om is not None and om.offset == 10 for om in before.values())
                core = a._core  # noqa: SLF001 - which broker to kill
                assert core is not None and core.coordinator is not None
                coordinator = core.coordinator
                await cluster.brokers.pop(coordinator).stop(0.1, controlled=False)
                started = time.monotonic()
                # the offsets survive on the new coordinator
                assert await a.committed(tps, timeout=BOUND_S) == before
                print(f"committed offsets back after coordinator loss: "
                      f"{(time.monotonic() - started) * 1000:.0f} ms")
                # and the group keeps consuming, from where it was
                await produce(cluster.bootstrap, "payments", 40, 4, start=40)
                more = await drain_all([a, b], 40, bound_s=45)
                new = set(more[0]) | set(more[1])
                assert new == {("payments", i % 4, 10 + (i - 40) // 4) for i in range(40, 80)}
                assert not new & (set(got[0]) | set(got[1]))
                assert a.assignment() | b.assignment() == set(tps)
                assert core.coordinator not in (None, coordinator)
            finally:
                await a.close()
                await b.close()
    run(scenario())


def test_pattern_subscription_and_partition_growth_rebalance(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster_with_topic(tmp_path, "metrics.cpu", 1) as cluster:
            c = consumer(cluster, "dash", metadata_max_age_ms=300)
            admin = AsyncAdmin(bootstrap_servers=cluster.bootstrap)
            try:
                c.subscribe(pattern=r"metrics\..*")
                assert await c.wait_for_assignment(BOUND_S) == {TopicPartition("metrics.cpu", 0)}
                await admin.create_topics([NewTopic("metrics.mem", 2, 2), NewTopic("logs", 1, 2)])

                async def has(n: int) -> bool:
                    await c.poll(0.05)
                    return len(c.assignment()) == n
                await until(lambda: has(3), "the new matching topic is assigned")
                assert c.subscription() == {"metrics.cpu", "metrics.mem"}
                await admin.create_partitions({"metrics.cpu": 3})
                await until(lambda: has(5), "the leader rejoined for the new partitions")
            finally:
                await admin.close()
                await c.close()
    run(scenario())


def test_static_member_restart_within_the_session_keeps_its_partitions(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster_with_topic(tmp_path, "static", 4) as cluster:
            a = consumer(cluster, "fixed", group_instance_id="worker-a", session_timeout_ms=6000)
            b = consumer(cluster, "fixed", group_instance_id="worker-b", session_timeout_ms=6000)
            a2: AsyncConsumer[Any, Any] | None = None
            try:
                a.subscribe(["static"])
                b.subscribe(["static"])

                async def shared() -> bool:
                    await a.poll(0.05)
                    await b.poll(0.05)
                    return (len(a.assignment()) == 2 and len(b.assignment()) == 2
                            and a.group_metadata().generation_id
                            == b.group_metadata().generation_id)
                await until(shared, "two static members")
                mine, generation = a.assignment(), b.group_metadata().generation_id
                rebalances = b.rebalances
                await a.close()  # a static member sends no LeaveGroup
                a2 = consumer(cluster, "fixed", group_instance_id="worker-a",
                              session_timeout_ms=6000)
                a2.subscribe(["static"])
                assert await a2.wait_for_assignment(BOUND_S) == mine
                for _ in range(10):  # b sees no rebalance
                    await b.poll(0.05)
                assert b.group_metadata().generation_id == generation
                assert b.rebalances == rebalances
            finally:
                for c in (a, b, a2):
                    if c is not None:
                        await c.close()
    run(scenario())


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_members_come_go_and_crash_yet_nothing_is_skipped(tmp_path: Path, seed: int,
                                                          strategy: str) -> None:
    """Random joins, graceful leaves and crashes (no LeaveGroup, no commit) while consuming
    with auto-commit: every record is seen at least once and the survivors end up owning
    every partition exactly once."""
    import random

    rng = random.Random(seed)
    partitions, total = 6, 600

    async def scenario() -> None:
        async with cluster_with_topic(tmp_path, "churn", partitions) as cluster:
            await produce(cluster.bootstrap, "churn", total // 2, partitions)
            seen: set[tuple[int, int]] = set()
            live: list[AsyncConsumer[Any, Any]] = []

            def add() -> None:
                c = consumer(cluster, "churn", auto_commit_interval_ms=100,
                             partition_assignment_strategy=strategy)
                c.subscribe(["churn"])
                live.append(c)

            async def poll_all(rounds: int) -> None:
                for _ in range(rounds):
                    for c in list(live):
                        for r in await c.poll(0.02):
                            seen.add((r.partition, r.offset))

            add()
            try:
                for step in range(8):
                    action = rng.choice(["add", "add", "leave", "crash"]) if len(live) > 1 \
                        else "add"
                    if action == "add":
                        add()
                    elif action == "leave":
                        await live.pop(rng.randrange(len(live))).close()
                    else:  # a crash: no commit, no LeaveGroup; the session expires
                        await live.pop(rng.randrange(len(live)))._shutdown()
                    if step == 4:
                        await produce(cluster.bootstrap, "churn", total // 2, partitions,
                                      start=total // 2)
                    await poll_all(rng.randint(5, 20))

                async def settled() -> bool:
                    await poll_all(1)
                    owned = [tp for c in live for tp in c.assignment()]
                    return (len(owned) == partitions and len(set(owned)) == partitions
                            and len(seen) == total)
                await until(settled, f"survivors own everything and saw all (seen {len(seen)})",
                            45)
            finally:
                for c in live:
                    await c.close()
    run(scenario())


# -- with Ray: ConsumerActor members on a LocalCluster ------------------------------------------

RAY_SESSION_MS = 2000


def _stuck_at(partition: int, offset: int) -> Callable[[Any], None]:
    """A handler that hangs on one record (pickled by value into the actor)."""
    def handler(record: Any) -> None:
        if record.partition == partition and record.offset >= offset:
            time.sleep(3600)
        time.sleep(0.01)  # slow enough for several auto-commits before the hang
    return handler


def _wait(predicate: Callable[[], bool], what: str, bound_s: float = BOUND_S) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > bound_s:
            raise TimeoutError(f"{what}: not true after {bound_s} s")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def ray_cluster(ray_session: None) -> Any:
    from clients.admin import Admin
    from cluster.launcher import LocalCluster, unique_name

    local = LocalCluster(brokers=3, controllers=1, name=unique_name("groups"),
                         log_level="WARNING", broker_config={
                             "offsets.topic.num.partitions": 3,
                             "group.initial.rebalance.delay.ms": 0,
                             "group.min.session.timeout.ms": 500,
                         })
    try:
        local.start()
        with Admin(bootstrap_servers=local.bootstrap_servers) as admin:
            admin.create_topics([NewTopic("work", 4, 2), NewTopic("ledger", 2, 2)])

            def led() -> bool:
                d = admin.describe_topics(["work", "ledger"])
                return all(p.leader is not None for t in d.values() for p in t.partitions)
            _wait(led, "topics have leaders")
        yield local
    finally:
        local.close()


def _actor(servers: str, topic: str, group: str, handler: Callable[[Any], None],
           **config: Any) -> Any:
    from clients.consumer_actor import ConsumerActor

    return ConsumerActor.remote(  # type: ignore[attr-defined]
        handler, [topic], group_id=group, bootstrap_servers=servers,
        session_timeout_ms=RAY_SESSION_MS, heartbeat_interval_ms=200,
        auto_offset_reset="earliest", fetch_max_wait_ms=100, **config)


def _noop(record: Any) -> None:
    return None


def test_killed_member_partitions_move_within_session_timeout(ray_cluster: Any) -> None:
    import ray

    servers = ray_cluster.bootstrap_servers
    a = _actor(servers, "work", "killers", lambda r: None)
    b = _actor(servers, "work", "killers", lambda r: None)
    try:
        ray.get([a.start.remote(), b.start.remote()])

        def status(x: Any) -> dict[str, Any]:
            return ray.get(x.status.remote(), timeout=10)  # type: ignore[no-any-return]

        _wait(lambda: len(status(a)["assignment"]) == 2 and len(status(b)["assignment"]) == 2,
              "two actors share four partitions")
        ray.kill(b, no_restart=True)
        took = _wait(lambda: len(status(a)["assignment"]) == 4, "a takes over", 20)
        print(f"rebalance after a killed member: {took * 1000:.0f} ms "
              f"(session.timeout.ms={RAY_SESSION_MS})")
        assert took <= RAY_SESSION_MS / 1000 + 1.5, took  # target: session timeout + 1 s
    finally:
        for x in (a, b):
            try:
                ray.get(x.stop.remote(5), timeout=10)
            except Exception:  # noqa: BLE001 - killed already
                pass
            ray.kill(x, no_restart=True)


def test_auto_commit_crash_skips_no_record(ray_cluster: Any) -> None:
    import ray

    from clients.producer.producer import Producer

    servers = ray_cluster.bootstrap_servers
    n = 200
    with Producer(bootstrap_servers=servers, linger_ms=5) as producer:
        for i in range(n):
            producer.send("ledger", b"v%d" % i, partition=i % 2)
        producer.flush(30)
    # a hangs in its handler at offset 60 of partition 0 (having committed earlier polls)
    a = _actor(servers, "ledger", "alo", _stuck_at(0, 60), commit="auto",
               auto_commit_interval_ms=100, max_poll_records=10)
    b = None
    try:
        ray.get(a.start.remote())
        _wait(lambda: any(p == 0 and o == 59 for _, p, o, _, _ in
                          ray.get(a.consumed.remote(), timeout=10)), "a reached offset 59")
        time.sleep(0.3)  # let any other partition's records of that poll be handled too
        seen_a = {(p, o) for _, p, o, _, _ in ray.get(a.consumed.remote(), timeout=10)}
        ray.kill(a, no_restart=True)
        b = _actor(servers, "ledger", "alo", _noop, commit="auto",
                   auto_commit_interval_ms=100)
        ray.get(b.start.remote())
        want = {(i % 2, i // 2) for i in range(n)}

        def covered() -> bool:
            seen_b = {(p, o) for _, p, o, _, _ in ray.get(b.consumed.remote(), timeout=10)}
            return want <= seen_a | seen_b
        _wait(covered, "a's and b's records cover the topic", 30)
        seen_b = {(p, o) for _, p, o, _, _ in ray.get(b.consumed.remote(), timeout=10)}
        # at-least-once: nothing skipped; what a handled but had not committed comes again
        assert (0, 60) in seen_b and (0, 60) not in seen_a
        again = seen_a & seen_b
        print(f"a handled {len(seen_a)}, redelivered after the crash: {len(again)}")
        assert len(again) < len(seen_a)  # b resumed from a's auto-commits, not from 0
    finally:
        for x in (a, b):
            if x is not None:
                ray.kill(x, no_restart=True)


def test_sync_consumer_runs_the_listener_on_the_callers_thread(ray_cluster: Any) -> None:
    import threading

    from clients.consumer.consumer import Consumer

    servers = ray_cluster.bootstrap_servers
    me = threading.get_ident()
    calls: list[tuple[str, int, list[TopicPartition]]] = []
    committed_in_revoke: list[Any] = []

    def on_revoke(consumer: Any, partitions: list[TopicPartition]) -> None:
        calls.append(("revoked", threading.get_ident(), partitions))
        # a callback may use the consumer: commit what it read before giving it up
        committed_in_revoke.append(consumer.commit({tp: 1 for tp in partitions}))

    def on_assign(consumer: Any, partitions: list[TopicPartition]) -> None:
        calls.append(("assigned", threading.get_ident(), partitions))

    cfg = dict(bootstrap_servers=servers, group_id="sync-listener",
               session_timeout_ms=RAY_SESSION_MS, heartbeat_interval_ms=200,
               auto_offset_reset="earliest", enable_auto_commit=False)
    a: Consumer[Any, Any] = Consumer(**cfg)
    b: Consumer[Any, Any] | None = None
    try:
        a.subscribe(["work"], on_assign=on_assign, on_revoke=on_revoke)
        assert len(a.wait_for_assignment(BOUND_S)) == 4
        b = Consumer(**cfg)
        b.subscribe(["work"])
        deadline = time.monotonic() + BOUND_S
        while not (len(a.assignment()) == 2 and len(b.assignment()) == 2):
            assert time.monotonic() < deadline, (a.assignment(), b.assignment())
            a.poll(0.05)
            b.poll(0.05)
        assert [c[0] for c in calls][:3] == ["assigned", "revoked", "assigned"]
        assert all(thread == me for _, thread, _ in calls)
        assert committed_in_revoke and len(committed_in_revoke[0]) == 4
        tp = TopicPartition("work", 0)
        assert a.committed([tp])[tp] is not None
        md = a.group_metadata()
        assert md.group_id == "sync-listener" and md.generation_id >= 2 and md.member_id
        assert a.subscription() == {"work"}
    finally:
        a.close()
        if b is not None:
            b.close()


def _fails_on_offset_3(records: list[Any]) -> None:
    if any(r.offset == 3 for r in records):
        raise ValueError("poison")


def test_consumer_actor_batches_skips_errors_and_commits_on_stop(ray_cluster: Any) -> None:
    import ray

    from clients.consumer.consumer import Consumer
    from clients.producer.producer import Producer

    servers = ray_cluster.bootstrap_servers
    with Producer(bootstrap_servers=servers, linger_ms=5) as producer:
        for i in range(20):
            producer.send("work", b"b%d" % i, partition=0)
        producer.flush(30)
    actor = _actor(servers, "work", "batcher", _fails_on_offset_3, batch=True,
                   on_error="skip", max_poll_records=5)
    try:
        ray.get(actor.start.remote(wait_for_assignment=BOUND_S), timeout=BOUND_S + 5)
        _wait(lambda: ray.get(actor.status.remote(), timeout=10)["processed"] >= 15,
              "the actor handled the batches")
        status = ray.get(actor.stop.remote(), timeout=40)
        assert status["state"] == "stopped" and status["assignment"] == []
        assert any("poison" in e for e in status["errors"])
        offsets = {o for _, p, o, _, _ in ray.get(actor.consumed.remote(), timeout=10)
                   if p == 0}
        missing = set(range(20)) - offsets  # the poison batch, skipped as a whole
        assert 3 in missing and len(missing) <= 5
        assert missing == set(range(min(missing), max(missing) + 1))
        assert status["processed"] == len(offsets)
    finally:
        ray.kill(actor, no_restart=True)
    check: Consumer[Any, Any]
    with Consumer(bootstrap_servers=servers, group_id="batcher") as check:
        committed = check.committed([TopicPartition("work", 0)])[TopicPartition("work", 0)]
        assert committed is not None and committed.offset == 20
