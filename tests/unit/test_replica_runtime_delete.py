"""ReplicaRuntime.delete_records (Kafka's DelayedDeleteRecords): the answer waits until the
followers on live brokers report the new log start in a fetch, else REQUEST_TIMED_OUT.
One event loop, two ReplicaManagers over an in-memory file system, no network."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from cluster.replica_runtime import FetchPartitionSpec, FetchSpec, ReplicaRuntime
from proto.errors import ErrorCode
from tests.unit.test_replica_manager import CONFIG, TOPIC, Harness, batch


def _runtime(h: Harness) -> ReplicaRuntime:
    metadata: Any = SimpleNamespace(broker_epoch=1)
    return ReplicaRuntime(h.brokers[1], channel=None, metadata=metadata,  # type: ignore[arg-type]
                          config=CONFIG)


def _follower_fetch(runtime: ReplicaRuntime, h: Harness) -> None:
    """Broker 2's next fetch through the runtime (as the servicer would run it)."""
    follower = h.brokers[2]
    for entry in follower.follower_fetch_entries(h.now).get(1, []):
        spec = FetchSpec(
            (FetchPartitionSpec(entry.topic, entry.partition, entry.request.fetch_offset,
                                1 << 20, entry.request.current_leader_epoch,
                                entry.request.last_fetched_epoch, entry.log_start_offset),),
            max_wait_ms=0, min_bytes=1, max_bytes=1 << 20, replica_id=2, broker_epoch=2)
        (r,) = runtime._read(spec)[0]  # noqa: SLF001 - the servicer's path without gRPC
        follower.on_follower_fetch_response(
            entry, r.error.code if r.error else ErrorCode.NONE,
            high_watermark=r.high_watermark, log_start_offset=r.log_start_offset,
            diverging_epoch=r.diverging_epoch, records=bytes(r.records), now_ms=h.now)


def test_delete_records_waits_for_the_follower_then_answers() -> None:
    async def scenario() -> None:
        h = Harness()
        runtime = _runtime(h)
        h.produce(batch([b"a", b"b", b"c"]), acks=1)
        h.replicate()
        h.replicate()
        # Nobody fetches: the follower never reports log start 2 within the timeout.
        ((error, low),) = await runtime.delete_records([(TOPIC, 0, 2)], timeout_ms=30)
        assert error is not None and error.code is ErrorCode.REQUEST_TIMED_OUT and low == -1
        assert h.brokers[1].get(TOPIC, 0).log.log_start_offset == 2  # type: ignore[union-attr]
        # A retry answers as soon as the follower's fetches carry the new log start.
        waiting = asyncio.ensure_future(runtime.delete_records([(TOPIC, 0, 2)], 10_000))
        await asyncio.sleep(0)
        assert not waiting.done()
        _follower_fetch(runtime, h)  # learns log start 2
        _follower_fetch(runtime, h)  # reports it: the low watermark reaches 2
        assert await asyncio.wait_for(waiting, 5) == [(None, 2)]
        # A partition this broker does not lead fails at once.
        ((error, _),) = await runtime.delete_records([("missing", 0, 1)], timeout_ms=10_000)
        assert error is not None and error.code is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION

    asyncio.run(scenario())
