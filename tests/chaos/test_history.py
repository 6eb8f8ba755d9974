"""The history file: every event kind round-trips through JSON lines, the writer is safe to
share between threads, and the reader tolerates only a torn last line."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from chaos.history import (
    ACKS_ALL, CommittedOffset, Event, ConsumerFn, ConsumerOp, FaultKind, FaultOp, FinalRead,
    FinalRecord, History, HistoryWriter, Json, MetadataOp, OpType, PolledRecord, SendOp,
    event_from_json, read_history, write_history,
)
from clients.types import TopicPartition

EVENTS: list[Event] = [
    SendOp(process="p1", type=OpType.INVOKE, topic="t", partition=None, key="k1", value="v1",
           time_ms=10, acks=ACKS_ALL, idempotent=True, producer_id=None),
    SendOp(process="p1", type=OpType.OK, topic="t", partition=2, key="k1", value="v1",
           time_ms=15, acks=ACKS_ALL, idempotent=True, producer_id=7, offset=41),
    SendOp(process="p1", type=OpType.INFO, topic="t", partition=2, key=None, value=3,
           time_ms=16, acks=1, idempotent=False, error="REQUEST_TIMED_OUT"),
    ConsumerOp(f=ConsumerFn.ASSIGN, process="c1", member_id="m-1", group="g", generation=4,
               time_ms=20, partitions=(TopicPartition("t", 0), TopicPartition("t", 2))),
    ConsumerOp(f=ConsumerFn.POLL, process="c1", member_id="m-1", group="g", generation=4,
               time_ms=21, records=(PolledRecord("t", 2, 41, "k1", "v1"),)),
    ConsumerOp(f=ConsumerFn.COMMIT, process="c1", member_id="m-1", group="g", generation=4,
               time_ms=22, offsets=(CommittedOffset("t", 2, 42),), reset=True),
    ConsumerOp(f=ConsumerFn.COMMIT, process="c1", member_id="m-1", group="g", generation=3,
               time_ms=23, type=OpType.FAIL, error="ILLEGAL_GENERATION"),
    FaultOp(f=FaultKind.TORN_WRITE, target="broker:2", time_ms=30,
            detail={"segment": "00000000000000000000.log", "cut_bytes": 17}),
    MetadataOp(topic="t", partition=2, leader=1, leader_epoch=5, isr=(1, 3), time_ms=31),
    FinalRead(replica=1, topic="t", partition=2,
              records=(FinalRecord(41, "k1", "v1", 123), FinalRecord(42, None, 3, None)),
              high_watermark=43, log_end_offset=43, log_start_offset=41, is_leader=True,
              time_ms=40),
]


def test_every_event_kind_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    write_history(path, EVENTS)
    assert len(path.read_text().splitlines()) == len(EVENTS)
    history = read_history(path)
    assert list(history.events) == EVENTS
    assert len(history.sends) == 3 and len(history.consumer_ops) == 4
    assert len(history.faults) == 1 and len(history.metadata) == 1
    assert len(history.final_reads) == 1
    assert (history.start_ms(), history.end_ms()) == (10, 31)


def test_acks_all_may_be_spelled_out() -> None:
    line: dict[str, Json] = {
        "f": "send", "type": "ok", "process": "p", "topic": "t", "partition": 0,
        "key": None, "value": "v", "offset": 0, "acks": "all", "time_ms": 1}
    op = event_from_json(line)
    assert isinstance(op, SendOp) and op.acks == ACKS_ALL and op.idempotent


def test_unknown_event_and_bad_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown history event"):
        event_from_json({"f": "teleport", "time_ms": 1})
    with pytest.raises(ValueError, match="acks"):
        event_from_json({"f": "send", "type": "ok", "process": "p", "topic": "t",
                         "partition": 0, "value": "v", "acks": 2, "time_ms": 1})
    with pytest.raises(ValueError, match="str, int or null"):
        event_from_json({"f": "send", "type": "ok", "process": "p", "topic": "t",
                         "partition": 0, "value": [1], "time_ms": 1})


def test_torn_last_line_is_skipped_but_a_bad_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    write_history(path, EVENTS[:2])
    with path.open("a") as f:
        f.write('{"f": "send", "type": "ok", "proc')  # the writer died mid-line
    assert list(read_history(path).events) == EVENTS[:2]

    with path.open("a") as f:
        f.write("\n" + '{"f": "heal", "target": "all", "time_ms": 99}' + "\n")
    with pytest.raises(ValueError, match=r"history.jsonl:3: bad history line"):
        read_history(path)


def test_writer_keeps_whole_lines_under_concurrent_appends(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    per_thread = 200

    def produce(process: str) -> None:
        for i in range(per_thread):
            writer.append(SendOp(process=process, type=OpType.INVOKE, topic="t", partition=0,
                                 key=None, value=f"{process}-{i}", time_ms=i))

    with HistoryWriter(path) as writer:
        threads = [threading.Thread(target=produce, args=(f"p{n}",)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    history = read_history(path)
    assert len(history.events) == 4 * per_thread
    for n in range(4):  # each thread's own appends keep their order
        mine = [e.value for e in history.sends if e.process == f"p{n}"]
        assert mine == [f"p{n}-{i}" for i in range(per_thread)]


def test_writer_truncates_unless_asked_to_append(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "history.jsonl"
    write_history(path, EVENTS[:1])
    write_history(path, EVENTS[1:2], append=True)
    assert read_history(path) == History.of(EVENTS[:2])
    write_history(path, EVENTS[2:3])
    assert read_history(path) == History.of(EVENTS[2:3])


def test_events_after_close_are_dropped_and_counted(tmp_path: Path) -> None:
    # An interrupted run closes its history while late delivery callbacks still fire.
    path = tmp_path / "history.jsonl"
    writer = HistoryWriter(path)
    writer.append(EVENTS[0])
    writer.close()
    writer.append(EVENTS[1])
    assert writer.dropped == 1
    assert read_history(path) == History.of(EVENTS[:1])


def test_an_ok_send_must_say_where_it_went() -> None:
    with pytest.raises(AssertionError, match="no offset"):
        SendOp(process="p", type=OpType.OK, topic="t", partition=0, key=None, value="v",
               time_ms=1, acks=1)
    with pytest.raises(AssertionError, match="no partition"):
        SendOp(process="p", type=OpType.OK, topic="t", partition=None, key=None, value="v",
               time_ms=1, offset=3)
    # acks=0: nothing acknowledges the send, so there is no offset to record
    SendOp(process="p", type=OpType.OK, topic="t", partition=0, key=None, value="v",
           time_ms=1, acks=0)


def test_final_reads_do_not_stretch_the_run() -> None:
    history = History.of(EVENTS)
    assert history.end_ms() == 31  # the final read at 40 comes after the run
