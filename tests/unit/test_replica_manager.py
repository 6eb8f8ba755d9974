"""ReplicaManager core: produce/fetch/list-offsets/delete-records decisions and follower
replication, two brokers joined by a fake link, on an in-memory file system, explicit now_ms."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.log.files import FileSystem, MemFileSystem, OsFileSystem
from cluster.log_manager import LogManager, parse_partition_dir_name
from cluster.replica_manager import FollowerEntry, ProducePartitionResult, ReplicaManager
from proto.broker_config import BrokerConfig
from proto.errors import ErrorCode
from proto.metadata import (
    BrokerRegistrationChangeRecord,
    ConfigRecord,
    ConfigResourceType,
    Endpoint,
    MetadataRecord,
    PartitionChangeRecord,
    PartitionRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
)
from proto.metadata_image import MetadataImage
from proto.records import RecordBatchBuilder, iter_batches

TOPIC, TID = "orders", "tid-orders"
CONFIG = BrokerConfig.resolve(replica_lag_time_max_ms=1000)


def batch(values: list[bytes], *, producer_id: int = -1, seq: int = -1) -> bytes:
    b = RecordBatchBuilder(producer_id=producer_id, producer_epoch=0 if producer_id >= 0 else -1,
                           base_sequence=seq, now_ms=1000)
    for v in values:
        b.append(v)
    return b.build()


class Harness:
    """Broker 1 leads orders-0 (replicas 1, 2); broker 2 follows; one shared image."""

    def __init__(self, min_isr: int = 1, fs: FileSystem | None = None,
                 root: str = "/data") -> None:
        self.fs = fs if fs is not None else MemFileSystem()
        self.image = MetadataImage()
        self.offset = 0
        self.now = 10_000
        self.brokers = {b: ReplicaManager(b, LogManager(f"{root}/broker-{b}", CONFIG, self.fs),
                                          CONFIG) for b in (1, 2)}
        records: list[MetadataRecord] = [
            RegisterBrokerRecord(b, f"inc-{b}", b, Endpoint("127.0.0.1", 9000 + b),
                                 fenced=False) for b in (1, 2)]
        records += [TopicRecord(TOPIC, TID),
                    ConfigRecord(ConfigResourceType.TOPIC, TOPIC, "min.insync.replicas",
                                 str(min_isr)),
                    PartitionRecord(TID, 0, (1, 2), (1, 2), 1, 0, 0)]
        self.apply(*records)

    def apply(self, *records: MetadataRecord) -> None:
        self.offset += 1
        change = self.image.apply_batch(records, self.offset)
        for m in self.brokers.values():
            m.apply_metadata(self.image, change, self.now)

    def replicate(self) -> None:
        """One follower fetch round from broker 2 to broker 1."""
        leader, follower = self.brokers[1], self.brokers[2]
        for entry in follower.follower_fetch_entries(self.now).get(1, []):
            r = leader.fetch_partition(
                entry.topic, entry.partition, fetch_offset=entry.request.fetch_offset,
                max_bytes=1 << 20, min_one=True,
                current_leader_epoch=entry.request.current_leader_epoch, now_ms=self.now,
                replica_id=2, broker_epoch=2,
                last_fetched_epoch=entry.request.last_fetched_epoch,
                follower_log_start_offset=entry.log_start_offset)
            follower.on_follower_fetch_response(
                entry, r.error.code if r.error else ErrorCode.NONE,
                high_watermark=r.high_watermark, log_start_offset=r.log_start_offset,
                diverging_epoch=r.diverging_epoch, records=bytes(r.records), now_ms=self.now)

    def produce(self, records: bytes, acks: int = -1,
                broker: int = 1) -> ProducePartitionResult:
        return self.brokers[broker].produce(TOPIC, 0, records, acks=acks, timeout_ms=1000,
                                            now_ms=self.now)


def test_dir_names_round_trip() -> None:
    assert parse_partition_dir_name("my-topic-12") == ("my-topic", 12)
    assert parse_partition_dir_name("orders-0.tid-delete") is None


def test_acks_all_completes_once_the_follower_has_the_batch() -> None:
    h = Harness()
    r = h.produce(batch([b"a", b"b"]))
    assert r.error is None and r.base_offset == 0 and r.wait_op is not None
    assert h.brokers[1].drain_events().completions == []
    h.replicate()  # follower appends offsets 0..1
    h.replicate()  # its next fetch offset tells the leader: HW -> 2
    events = h.brokers[1].drain_events()
    assert [(tp, c.error) for tp, c in events.completions] == [("orders-0", ErrorCode.NONE)]
    assert h.brokers[2].get(TOPIC, 0).log.log_end_offset == 2  # type: ignore[union-attr]


def test_consumer_fetch_reads_below_the_high_watermark_only() -> None:
    h = Harness()
    h.produce(batch([b"a"]), acks=1)
    r = h.brokers[1].fetch_partition(TOPIC, 0, fetch_offset=0, max_bytes=1 << 20, min_one=True,
                                     current_leader_epoch=-1, now_ms=h.now)
    assert r.error is None and r.high_watermark == 0 and len(r.records) == 0
    h.replicate()
    h.replicate()
    r = h.brokers[1].fetch_partition(TOPIC, 0, fetch_offset=0, max_bytes=1 << 20, min_one=True,
                                     current_leader_epoch=0, now_ms=h.now)
    assert r.high_watermark == 1 and [b.base_offset for b in iter_batches(r.records)] == [0]
    r = h.brokers[1].fetch_partition(TOPIC, 0, fetch_offset=5, max_bytes=1 << 20, min_one=True,
                                     current_leader_epoch=-1, now_ms=h.now)
    assert r.error is not None and r.error.code is ErrorCode.OFFSET_OUT_OF_RANGE
    r = h.brokers[1].fetch_partition(TOPIC, 0, fetch_offset=0, max_bytes=1 << 20, min_one=True,
                                     current_leader_epoch=3, now_ms=h.now)
    assert r.error is not None and r.error.code is ErrorCode.UNKNOWN_LEADER_EPOCH


def test_not_enough_replicas_is_refused_before_the_append() -> None:
    h = Harness(min_isr=2)
    h.apply(PartitionChangeRecord(TID, 0, isr=(1,)))
    r = h.produce(batch([b"x"]))
    assert r.error is not None and r.error.code is ErrorCode.NOT_ENOUGH_REPLICAS
    assert h.brokers[1].get(TOPIC, 0).log.log_end_offset == 0  # type: ignore[union-attr]
    r = h.produce(batch([b"x"]), acks=1)
    assert r.error is None and r.base_offset == 0


def test_idempotent_duplicate_returns_the_original_offset_and_is_stored_once() -> None:
    h = Harness()
    first = h.produce(batch([b"a", b"b"], producer_id=7, seq=0), acks=1)
    dup = h.produce(batch([b"a", b"b"], producer_id=7, seq=0), acks=1)
    assert first.error is None and dup.error is None and dup.base_offset == first.base_offset
    assert h.brokers[1].get(TOPIC, 0).log.log_end_offset == 2  # type: ignore[union-attr]
    gap = h.produce(batch([b"c"], producer_id=7, seq=5), acks=1)
    assert gap.error is not None and gap.error.code is ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    # The follower builds the same producer state from the batches it replicates.
    h.replicate()
    assert (h.brokers[2].get(TOPIC, 0).producers.fingerprint()  # type: ignore[union-attr]
            == h.brokers[1].get(TOPIC, 0).producers.fingerprint())  # type: ignore[union-attr]


def test_bad_batches_are_refused_and_nothing_is_stored() -> None:
    h = Harness()
    bad = bytearray(batch([b"a"]))
    bad[-1] ^= 0x01
    def code(records: bytes) -> ErrorCode | None:
        error = h.produce(records, acks=1).error
        return None if error is None else error.code

    assert code(bytes(bad)) is ErrorCode.CORRUPT_MESSAGE
    assert code(b"junk") is ErrorCode.CORRUPT_MESSAGE
    assert code(batch([b"a"]) + batch([b"b"])) is ErrorCode.INVALID_RECORD
    h.apply(ConfigRecord(ConfigResourceType.TOPIC, TOPIC, "max.message.bytes", "100"))
    assert code(batch([b"x" * 200])) is ErrorCode.MESSAGE_TOO_LARGE
    assert h.brokers[1].get(TOPIC, 0).log.log_end_offset == 0  # type: ignore[union-attr]
    assert ReplicaManager.check_acks(2) is not None


def test_unknown_partition_and_not_leader_carry_a_hint() -> None:
    h = Harness()
    r = h.brokers[1].produce("nope", 0, batch([b"a"]), acks=1, timeout_ms=10, now_ms=h.now)
    assert r.error is not None and r.error.code is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    r = h.produce(batch([b"a"]), broker=2)
    assert r.error is not None and r.error.code is ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert r.current_leader is not None and r.current_leader.leader_id == 1


def test_list_offsets_and_delete_records() -> None:
    h = Harness()
    for v in (b"a", b"b", b"c"):
        h.produce(batch([v]), acks=1)
    h.replicate()
    h.replicate()
    m = h.brokers[1]
    assert m.list_offsets(TOPIC, 0, timestamp=-1, current_leader_epoch=-1).offset == 3
    assert m.list_offsets(TOPIC, 0, timestamp=-2, current_leader_epoch=-1).offset == 0
    assert m.list_offsets(TOPIC, 0, timestamp=0, current_leader_epoch=-1).offset == 0
    error, low = m.delete_records(TOPIC, 0, 2)
    assert error is None and low == 2
    error, _ = m.delete_records(TOPIC, 0, 9)
    assert error is not None and error.code is ErrorCode.OFFSET_OUT_OF_RANGE
    assert m.list_offsets(TOPIC, 0, timestamp=-2, current_leader_epoch=-1).offset == 2
    h.produce(batch([b"d"]), acks=1)
    h.replicate()  # the follower learns the log start from the response
    assert h.brokers[2].get(TOPIC, 0).log.log_start_offset == 2  # type: ignore[union-attr]


def test_new_leader_truncates_a_diverged_follower() -> None:
    h = Harness()
    h.produce(batch([b"a"]), acks=1)
    h.replicate()
    h.replicate()
    h.produce(batch([b"unreplicated"]), acks=1)  # only on broker 1
    # Broker 2 becomes leader (epoch 1) and takes a different write at offset 1.
    h.apply(PartitionChangeRecord(TID, 0, leader=2, isr=(2,)))
    assert h.produce(batch([b"new"]), acks=1, broker=2).base_offset == 1
    h.apply(PartitionChangeRecord(TID, 0, isr=(2, 1)))
    old, new = h.brokers[1], h.brokers[2]
    for _ in range(3):
        for entry in old.follower_fetch_entries(h.now).get(2, []):
            r = new.fetch_partition(
                TOPIC, 0, fetch_offset=entry.request.fetch_offset, max_bytes=1 << 20,
                min_one=True, current_leader_epoch=entry.request.current_leader_epoch,
                now_ms=h.now, replica_id=1, broker_epoch=1,
                last_fetched_epoch=entry.request.last_fetched_epoch)
            old.on_follower_fetch_response(
                entry, r.error.code if r.error else ErrorCode.NONE,
                high_watermark=r.high_watermark, log_start_offset=r.log_start_offset,
                diverging_epoch=r.diverging_epoch, records=bytes(r.records), now_ms=h.now)
    data = old.get(TOPIC, 0).log.read(0, 1 << 20)  # type: ignore[union-attr]
    values = [rec.value for b in iter_batches(data.records) for rec in b]
    assert values == [b"a", b"new"]


def test_producer_state_survives_a_reopen_and_removed_topics_are_deleted(
        tmp_path: Path) -> None:
    h = Harness(fs=OsFileSystem(), root=str(tmp_path))
    h.produce(batch([b"a"], producer_id=9, seq=0), acks=1)
    h.brokers[1].close_all()  # clean shutdown writes a snapshot
    again = ReplicaManager(1, LogManager(f"{tmp_path}/broker-1", CONFIG, h.fs), CONFIG)
    assert again.open_existing(h.now) == ["orders-0"]
    assert again.get(TOPIC, 0).producers.entry(9) is not None  # type: ignore[union-attr]
    change = h.image.apply_batch([RemoveTopicRecord(TID)], h.offset + 1)
    outcome = again.apply_metadata(h.image, change, h.now)
    assert again.get(TOPIC, 0) is None and len(outcome.delete_dirs) == 1
    assert outcome.delete_dirs[0].endswith("-delete")
    assert again.logs.existing_partitions() == []


def test_follower_entries_name_the_leader() -> None:
    h = Harness()
    entries = h.brokers[2].follower_fetch_entries(h.now)
    assert list(entries) == [1]
    entry: FollowerEntry = entries[1][0]
    assert (entry.topic, entry.partition, entry.request.fetch_offset) == (TOPIC, 0, 0)
    assert h.brokers[1].follower_fetch_entries(h.now) == {}


def test_deleted_topic_closes_every_replica_and_fails_parked_produces() -> None:
    h = Harness()
    r = h.produce(batch([b"a"]))
    assert r.wait_op is not None
    h.apply(RemoveTopicRecord(TID))
    events = h.brokers[1].drain_events()
    assert [(tp, c.error) for tp, c in events.completions] == [
        ("orders-0", ErrorCode.NOT_LEADER_OR_FOLLOWER)]
    assert h.brokers[1].get(TOPIC, 0) is None and h.brokers[2].get(TOPIC, 0) is None
    assert h.brokers[1].logs.existing_partitions() == []


def _timed_batch(timestamps: list[int], *, producer_id: int = -1, seq: int = -1) -> bytes:
    b = RecordBatchBuilder(producer_id=producer_id, producer_epoch=0 if producer_id >= 0 else -1,
                           base_sequence=seq)
    for i, ts in enumerate(timestamps):
        b.append(b"v%d" % i, timestamp_ms=ts)
    return b.build()


def test_list_offsets_max_timestamp_is_the_first_record_holding_it_below_the_hw() -> None:
    h = Harness()
    m = h.brokers[1]
    h.produce(_timed_batch([5, 9, 7]), acks=1)  # offsets 0..2
    assert m.list_offsets(TOPIC, 0, timestamp=-3, current_leader_epoch=-1).offset == -1  # HW 0
    h.produce(_timed_batch([9, 3]), acks=1)  # offsets 3..4: a later 9 does not win
    h.replicate()
    h.replicate()
    r = m.list_offsets(TOPIC, 0, timestamp=-3, current_leader_epoch=-1)
    assert (r.error, r.offset, r.timestamp, r.leader_epoch) == (None, 1, 9, 0)
    m.delete_records(TOPIC, 0, 2)  # the record with ts 9 at offset 1 is gone: offset 3 now
    r = m.list_offsets(TOPIC, 0, timestamp=-3, current_leader_epoch=-1)
    assert (r.offset, r.timestamp) == (3, 9)
    h.produce(_timed_batch([50]), acks=1)  # above the HW until replicated
    assert m.list_offsets(TOPIC, 0, timestamp=-3, current_leader_epoch=-1).offset == -1


def test_high_watermarks_are_checkpointed_and_survive_a_restart(tmp_path: Path) -> None:
    h = Harness(fs=OsFileSystem(), root=str(tmp_path))
    leader, follower = h.brokers[1], h.brokers[2]
    h.produce(batch([b"a", b"b", b"c"]), acks=1)
    h.replicate()
    h.replicate()  # leader HW 3; the follower learns it from this response
    assert leader.get(TOPIC, 0).replica.high_watermark == 3  # type: ignore[union-attr]
    data = leader.high_watermark_checkpoint()
    assert data is not None and b"orders 0 3" in data
    assert leader.high_watermark_checkpoint() is None  # unchanged since: nothing to write
    follower.close_all()  # clean shutdown writes the checkpoint
    again = ReplicaManager(2, LogManager(f"{tmp_path}/broker-2", CONFIG, h.fs), CONFIG)
    again.open_existing(h.now)
    assert again.get(TOPIC, 0).replica.high_watermark == 3  # type: ignore[union-attr]
    # A garbled or stale checkpoint is survivable: clamped to [log start, LEO], or ignored.
    h.fs.atomic_replace(again.hw_checkpoint_path, b"0\n1\norders 0 99\n")
    assert ReplicaManager(2, LogManager(f"{tmp_path}/broker-2", CONFIG, h.fs),
                          CONFIG)._checkpointed_hw == {("orders", 0): 99}
    again.close_all()
    h.fs.atomic_replace(again.hw_checkpoint_path, b"0\n1\norders 0 99\n")
    third = ReplicaManager(2, LogManager(f"{tmp_path}/broker-2", CONFIG, h.fs), CONFIG)
    third.open_existing(h.now)
    assert third.get(TOPIC, 0).replica.high_watermark == 3  # type: ignore[union-attr]
    third.close_all()
    h.fs.atomic_replace(third.hw_checkpoint_path, b"garbage")
    fourth = ReplicaManager(2, LogManager(f"{tmp_path}/broker-2", CONFIG, h.fs), CONFIG)
    fourth.open_existing(h.now)
    assert fourth.get(TOPIC, 0).replica.high_watermark == 0  # type: ignore[union-attr]


def test_producer_state_is_snapshotted_on_segment_roll_and_recovered_from_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(fs=OsFileSystem(), root=str(tmp_path))
    h.apply(ConfigRecord(ConfigResourceType.TOPIC, TOPIC, "segment.bytes", "300"))
    seq = 0
    for _ in range(6):  # ~90-byte batches: a roll every few appends
        h.produce(batch([b"x" * 20], producer_id=7, seq=seq), acks=1)
        seq += 1
    plog = h.brokers[1].get(TOPIC, 0).log  # type: ignore[union-attr]
    assert len(plog.segments) > 1
    snapshots = plog.snapshot_offsets()
    assert snapshots, "a roll writes a producer-state snapshot"
    assert all(s in {seg.base_offset + 1 for seg in plog.segments[1:]} for s in snapshots)
    # The follower rolls too, and snapshots as it applies the leader's batches.
    for _ in range(4):
        h.replicate()
    flog = h.brokers[2].get(TOPIC, 0).log  # type: ignore[union-attr]
    assert flog.log_end_offset == seq
    assert len(flog.segments) > 1 and flog.snapshot_offsets()
    # A crash (no clean shutdown): the newest snapshot is loaded, the rest replayed.
    replayed_from: list[int] = []
    replay = ReplicaManager._replay

    def spy(table: object, log: object, start: int) -> None:
        replayed_from.append(start)
        replay(table, log, start)  # type: ignore[arg-type]

    monkeypatch.setattr(ReplicaManager, "_replay", staticmethod(spy))
    again = ReplicaManager(1, LogManager(f"{tmp_path}/broker-1", CONFIG, h.fs), CONFIG)
    again.open_existing(h.now)
    assert replayed_from == [max(snapshots)]  # not from the log start
    table = again.get(TOPIC, 0).producers  # type: ignore[union-attr]
    entry = table.entry(7)  # type: ignore[union-attr]
    assert entry is not None and entry.last_sequence == seq - 1


def test_delete_records_low_watermark_waits_for_live_followers() -> None:
    h = Harness()
    m = h.brokers[1]
    h.produce(batch([b"a", b"b", b"c"]), acks=1)
    h.replicate()
    h.replicate()
    assert m.low_watermark(TOPIC, 0) == (None, 0)
    m.drain_events()
    assert m.delete_records(TOPIC, 0, 2) == (None, 2)
    assert m.drain_events().changed == ["orders-0"]  # parked follower fetches wake up
    assert m.low_watermark(TOPIC, 0) == (None, 0)  # the follower still starts at 0
    h.replicate()  # the answer carries log start 2; the follower moves its own
    assert h.brokers[2].get(TOPIC, 0).log.log_start_offset == 2  # type: ignore[union-attr]
    h.replicate()  # ... and its next fetch reports it
    assert m.low_watermark(TOPIC, 0) == (None, 2)
    m.delete_records(TOPIC, 0, 3)
    assert m.low_watermark(TOPIC, 0) == (None, 2)
    h.apply(BrokerRegistrationChangeRecord(2, 2, fenced=True))  # a dead follower is not waited for
    assert m.low_watermark(TOPIC, 0) == (None, 3)
    error, _ = h.brokers[2].low_watermark(TOPIC, 0)
    assert error is not None and error.code is ErrorCode.NOT_LEADER_OR_FOLLOWER
