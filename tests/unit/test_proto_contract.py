"""The gRPC contract in proto/: stubs are fresh, error codes match errors.py, services are whole,
and the multi-partition data-path messages survive the wire byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf.descriptor import FieldDescriptor, ServiceDescriptor

from proto import admin_pb2, broker_pb2, common_pb2, controller_pb2, generate
from proto.errors import ErrorCode

BROKER_RPCS = {
    "Metadata", "Produce", "Fetch", "ListOffsets", "InitProducerId", "CreateTopics",
    "DeleteTopics", "CreatePartitions", "DescribeConfigs", "IncrementalAlterConfigs",
    "DeleteRecords", "FindCoordinator", "JoinGroup", "SyncGroup", "Heartbeat", "LeaveGroup",
    "OffsetCommit", "OffsetFetch", "ListGroups", "DescribeGroups", "DeleteGroups",
    "ElectLeaders",
}
CONTROLLER_RPCS = {
    "Vote", "AppendEntries", "InstallSnapshot", "BrokerRegistration", "BrokerHeartbeat",
    "FetchMetadata", "AlterPartition", "CreateTopics", "DeleteTopics", "CreatePartitions",
    "IncrementalAlterConfigs", "AllocateProducerIds", "ElectLeaders", "DescribeQuorum",
}
# The streaming RPCs: followers and consumers send their Fetches, producers their Produces, over
# long-lived bidirectional streams.
STREAMING_RPCS = {("Broker", "ReplicaFetch"): ("FetchRequest", "FetchResponse"),
                  ("Broker", "ProduceStream"): ("ProduceRequest", "ProduceResponse"),
                  ("Broker", "FetchStream"): ("FetchRequest", "FetchResponse")}
# Brokers forward these to the controller unchanged, so both services must use one message type.
FORWARDED_RPCS = {
    "CreateTopics", "DeleteTopics", "CreatePartitions", "IncrementalAlterConfigs", "ElectLeaders",
}
# Every controller response starts with this header (controller.proto), so a transport can follow
# a NOT_CONTROLLER hint without knowing the RPC.
CONTROLLER_HEADER = {
    1: ("error_code", FieldDescriptor.TYPE_INT32),
    2: ("error_message", FieldDescriptor.TYPE_STRING),
    3: ("leader_id", FieldDescriptor.TYPE_INT32),
    4: ("leader_address", FieldDescriptor.TYPE_STRING),
}


def _service(module: ModuleType, name: str) -> ServiceDescriptor:
    service: ServiceDescriptor = module.DESCRIPTOR.services_by_name[name]
    return service


# --- (a) generated stubs -------------------------------------------------------------------------


def test_committed_stubs_match_a_fresh_generation() -> None:
    problems = generate.stale_files()
    assert not problems, "run `python -m proto.generate`:\n" + "\n".join(problems)


def test_staleness_check_reports_an_edited_stub(tmp_path: Path) -> None:
    # A copy of proto/ with one stub edited and one orphan stub: the check must name both.
    copy = tmp_path / "proto"
    copy.mkdir()
    for path in (generate.ROOT / "proto").iterdir():
        if path.suffix == ".proto" or generate.is_generated_name(path.name):
            shutil.copyfile(path, copy / path.name)
    with (copy / "common_pb2.py").open("a", encoding="utf-8") as stub:
        stub.write("# hand edit\n")
    (copy / "gone_pb2.py").write_text("# from a deleted .proto\n", encoding="utf-8")

    assert generate.stale_files(tmp_path) == [
        "proto/common_pb2.py: differs",
        "proto/gone_pb2.py: orphan (no .proto generates it)",
    ]


# --- (b) error codes -----------------------------------------------------------------------------


def test_proto_error_codes_match_errors_py_exactly() -> None:
    in_proto = {value.name: value.number for value in common_pb2.ErrorCode.DESCRIPTOR.values}
    in_python = {code.name: int(code) for code in ErrorCode}
    assert in_proto == in_python


def test_error_code_zero_is_none_as_proto3_requires() -> None:
    assert common_pb2.ErrorCode.DESCRIPTOR.values[0].name == "NONE"
    assert common_pb2.ErrorCode.DESCRIPTOR.values[0].number == ErrorCode.NONE == 0


# --- (c) services --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "service_name", "expected"),
    [(broker_pb2, "Broker", BROKER_RPCS), (controller_pb2, "Controller", CONTROLLER_RPCS)],
)
def test_service_exposes_every_rpc_with_request_response_types(
    module: ModuleType, service_name: str, expected: set[str]
) -> None:
    methods = _service(module, service_name).methods_by_name
    assert expected <= set(methods), f"missing: {sorted(expected - set(methods))}"
    for name, method in methods.items():
        streaming = STREAMING_RPCS.get((service_name, name))
        if streaming is not None:
            assert method.client_streaming and method.server_streaming, name
            assert (method.input_type.name, method.output_type.name) == streaming, name
            continue
        assert not method.client_streaming and not method.server_streaming, name
        assert method.input_type.name == f"{name}Request", name
        assert method.output_type.name == f"{name}Response", name


@pytest.mark.parametrize("rpc", sorted(FORWARDED_RPCS))
def test_forwarded_admin_rpcs_share_messages_between_services(rpc: str) -> None:
    on_broker = _service(broker_pb2, "Broker").methods_by_name[rpc]
    on_controller = _service(controller_pb2, "Controller").methods_by_name[rpc]
    assert on_broker.input_type is on_controller.input_type
    assert on_broker.output_type is on_controller.output_type
    assert on_broker.input_type.file is admin_pb2.DESCRIPTOR


@pytest.mark.parametrize("rpc", sorted(CONTROLLER_RPCS))
def test_controller_responses_carry_the_leader_hint_header(rpc: str) -> None:
    response = _service(controller_pb2, "Controller").methods_by_name[rpc].output_type
    for number, (name, kind) in CONTROLLER_HEADER.items():
        field = response.fields_by_number.get(number)
        assert field is not None and (field.name, field.type) == (name, kind), (rpc, number)
    # Absent means "no known leader"; 0 is a valid node id.
    assert response.fields_by_name["leader_id"].has_presence, rpc


# --- (d), (e) data-path messages round-trip ------------------------------------------------------


def test_produce_request_with_many_partitions_round_trips() -> None:
    batches = {
        ("orders", 0): bytes(range(256)),  # every byte value, not UTF-8
        ("orders", 3): b"\x00" * 61 + b"\xff" * 1000,
        ("payments", 1): b"",
        ("payments", 7): bytes(range(256)) * 4096,  # 1 MiB
    }
    request = broker_pb2.ProduceRequest(acks=-1, timeout_ms=30_000, transactional_id="tx-1")
    for topic in ("orders", "payments"):
        topic_data = request.topics.add(name=topic)
        for (name, partition), records in batches.items():
            if name == topic:
                topic_data.partitions.add(partition_index=partition, records=records)

    decoded = broker_pb2.ProduceRequest.FromString(request.SerializeToString())

    assert decoded == request
    assert (decoded.acks, decoded.timeout_ms, decoded.transactional_id) == (-1, 30_000, "tx-1")
    assert {
        (topic.name, partition.partition_index): partition.records
        for topic in decoded.topics
        for partition in topic.partitions
    } == batches
    assert not broker_pb2.ProduceRequest.FromString(b"").HasField("transactional_id")


def test_fetch_response_with_diverging_epoch_round_trips() -> None:
    response = broker_pb2.FetchResponse()
    topic = response.topics.add(name="orders", topic_id="5f1c2a4e-8b7d-4c3e-9a1f-0e2d3c4b5a69")
    diverged = topic.partitions.add(
        partition_index=2,
        error_code=ErrorCode.NONE,
        high_watermark=120,
        last_stable_offset=120,
        log_start_offset=0,
    )
    diverged.diverging_epoch.epoch = 4
    diverged.diverging_epoch.end_offset = 97
    fenced = topic.partitions.add(
        partition_index=5,
        error_code=ErrorCode.FENCED_LEADER_EPOCH,
        error_message="epoch 4 < current 6 for orders-5",
        high_watermark=-1,
        last_stable_offset=-1,
        log_start_offset=-1,
    )
    fenced.current_leader.leader_id = 0
    fenced.current_leader.leader_epoch = 6
    topic.partitions.add(partition_index=6, high_watermark=10, records=b"\x00\x01\xfe\xff" * 100)
    response.node_endpoints.add(node_id=0, host="127.0.0.1", port=9092, rack="r1")

    decoded = broker_pb2.FetchResponse.FromString(response.SerializeToString())

    assert decoded == response
    p2, p5, p6 = decoded.topics[0].partitions
    assert p2.HasField("diverging_epoch") and not p2.records
    assert (p2.diverging_epoch.epoch, p2.diverging_epoch.end_offset) == (4, 97)
    assert not p5.HasField("diverging_epoch")
    assert (p5.current_leader.leader_id, p5.current_leader.leader_epoch) == (0, 6)
    assert ErrorCode(p5.error_code) is ErrorCode.FENCED_LEADER_EPOCH
    assert p6.records == b"\x00\x01\xfe\xff" * 100
    assert not p6.HasField("preferred_read_replica")


def test_unknown_error_codes_survive_the_wire() -> None:
    # error_code is int32, not the enum, so a newer peer's code is kept as its number.
    response = broker_pb2.HeartbeatResponse(error_code=9999)
    assert broker_pb2.HeartbeatResponse.FromString(response.SerializeToString()).error_code == 9999


def test_consumer_fetch_is_not_a_replica_fetch_by_default() -> None:
    # Absent replica_state = a consumer (Kafka replica_id -1), never broker 0 replicating.
    request = broker_pb2.FetchRequest.FromString(b"")
    assert not request.HasField("replica_state")
    partition = request.topics.add(name="t").partitions.add(fetch_offset=0)
    assert not partition.HasField("current_leader_epoch")
    assert not partition.HasField("last_fetched_epoch")
