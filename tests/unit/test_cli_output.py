"""`rafka` output helpers: aligned tables, key/value blocks, JSON documents, record lines."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from clients.types import QuorumInfo, QuorumReplica, Record, TimestampType
from cluster.cli_cluster import max_follower_lag_time_ms, quorum_rows
from cluster.cli_io import format_record
from cluster.cli_output import Output, cell, format_pairs, format_table, jsonable, snake
from cluster.cli_perf import ProgressBar, percentile, summarize, total_line, window_line


def test_table_aligns_columns_under_kafka_headers() -> None:
    columns = [("GROUP", "group"), ("PARTITION", "partition"), ("LAG", "lag")]
    rows = [{"group": "billing", "partition": 0, "lag": 12},
            {"group": "b", "partition": 10, "lag": None}]
    assert format_table(columns, rows).splitlines() == [
        "GROUP    PARTITION  LAG",
        "billing  0          12",
        "b        10         -",
    ]


def test_cells_render_none_lists_and_bools() -> None:
    assert cell(None) == "-"
    assert cell([1, 2, 3]) == "1,2,3"
    assert cell(()) == "-"
    assert cell(True) == "true"
    assert cell(0) == "0"


def test_empty_table_is_the_header_line() -> None:
    assert format_table([("TOPIC", "t"), ("STATUS", "s")], []) == "TOPIC  STATUS"


def test_pairs_pad_the_keys() -> None:
    assert format_pairs([("LeaderId", 1), ("HighWatermark", 25)]).splitlines() == [
        "LeaderId:       1",
        "HighWatermark:  25",
    ]


def test_snake_case_keys_for_json() -> None:
    assert snake("TOTAL-LAG") == "total_lag"
    assert snake("LeaderEpoch") == "leader_epoch"
    assert snake("MaxFollowerLagTimeMs") == "max_follower_lag_time_ms"
    assert snake("GROUP") == "group"


def test_json_output_is_one_document() -> None:
    stream = io.StringIO()
    out = Output("json", stream)
    out.table("topics", [("TOPIC", "topic")], [{"topic": "a", "status": "OK"}])
    out.line("dropped in json mode")
    out.flush()
    assert json.loads(stream.getvalue()) == [{"topic": "a", "status": "OK"}]

    stream = io.StringIO()
    out = Output("json", stream)
    out.pairs("summary", [("TOTAL-LAG", 3)])
    out.table("rows", [("A", "a")], [{"a": 1}])
    out.flush()
    assert json.loads(stream.getvalue()) == {"summary": {"total_lag": 3}, "rows": [{"a": 1}]}


def test_text_output_prints_title_and_table() -> None:
    stream = io.StringIO()
    out = Output("text", stream)
    out.table("brokers", [("ID", "id")], [{"id": 1}], title="BROKERS")
    out.flush()
    assert stream.getvalue() == "BROKERS\nID\n1\n"


def test_jsonable_handles_dataclasses_bytes_and_errors() -> None:
    @dataclass
    class Item:
        name: str
        data: bytes

    assert jsonable({"x": Item("a", b"\xffz"), "e": ValueError("bad")}) == {
        "x": {"name": "a", "data": "\\xffz"}, "e": "bad"}


def _record(key: bytes | None, headers: tuple = ()) -> Record:  # type: ignore[type-arg]
    return Record("t", 2, 7, 1_700_000_000_000, TimestampType.CREATE_TIME, key, b"value",
                  headers)


def test_record_line_is_kafkas_console_format() -> None:
    line = format_record(_record(b"k", (("a", b"1"), ("b", None))))
    assert line == "CreateTime:1700000000000\tPartition:2\tOffset:7\ta:1,b:null\tk\tvalue"
    assert format_record(_record(None)) == (
        "CreateTime:1700000000000\tPartition:2\tOffset:7\tNO_HEADERS\tnull\tvalue")
    assert format_record(_record(b"k"), value_only=True) == "value"


def test_record_json_line_carries_every_field() -> None:
    doc = json.loads(format_record(_record(b"k", (("a", b"1"),)), fmt="json"))
    assert doc == {"topic": "t", "partition": 2, "offset": 7, "timestamp": 1_700_000_000_000,
                   "timestamp_type": "CREATE_TIME", "key": "k", "value": "value",
                   "headers": [["a", "1"]]}


def _quorum() -> QuorumInfo:
    return QuorumInfo(
        leader_id=2, leader_epoch=5, high_watermark=100,
        voters=(QuorumReplica(1, 90, 10, 1_000, 400), QuorumReplica(2, 100, 0, 1_000, 1_000),
                QuorumReplica(3, 100, 0, 1_000, 1_000)),
        observers=(QuorumReplica(2, 100, 0, 990, -1),))


def test_quorum_rows_leader_first_and_observers_marked() -> None:
    rows = quorum_rows(_quorum())
    assert [(r["node_id"], r["status"]) for r in rows] == [
        (2, "Leader"), (1, "Follower"), (3, "Follower"), (2, "Observer")]
    assert rows[3]["last_caught_up_timestamp"] is None
    human = quorum_rows(_quorum(), now_ms=1_500)
    assert human[0]["last_fetch_timestamp"] == "500 ms ago"


def test_quorum_max_follower_lag_and_time() -> None:
    info = _quorum()
    assert info.max_follower_lag == 10
    assert max_follower_lag_time_ms(info) == 600
    caught_up = QuorumInfo(1, 1, 5, (QuorumReplica(1, 5, 0, 9, 9), QuorumReplica(2, 5, 0, 9, 9)))
    assert max_follower_lag_time_ms(caught_up) == 0


def test_perf_lines_use_kafkas_format() -> None:
    summary = summarize(1000, 2.0, 100, [float(i) for i in range(1, 1001)])
    assert total_line(summary) == (
        "1000 records sent, 500.000000 records/sec (0.05 MB/sec), 500.50 ms avg latency, "
        "1000.00 ms max latency, 501 ms 50th, 951 ms 95th, 991 ms 99th, 1000 ms 99.9th.")
    assert window_line(10, 2.0, 1024 * 1024, 50.0, 9.0) == (
        "10 records sent, 5.0 records/sec (0.50 MB/sec), 5.0 ms avg latency, "
        "9.0 ms max latency.")
    assert percentile([], 0.5) == 0.0


def test_progress_bar_render() -> None:
    assert ProgressBar.render(5, 10, width=10) == "[#####-----]  50.0%  5/10"
    assert ProgressBar.render(20, 10, width=4) == "[####] 100.0%  20/10"


def test_partition_status_flags_offline_and_under_replicated() -> None:
    from clients.types import PartitionInfo
    from cluster.cli_topic import partition_status

    assert partition_status(PartitionInfo(0, None, (3,), (), (3,))) == "offline"
    assert partition_status(PartitionInfo(0, 1, (1, 2, 3), (1, 2), (3,))) == "under-replicated"
    assert partition_status(PartitionInfo(0, 1, (1, 2), (2, 1))) == "ok"
