"""ControlManager: broker lifecycle, elections, topics, configs, producer ids (explicit now_ms)."""

from __future__ import annotations

import random

import pytest

from controller.control import ControlManager, ControllerConfig
from controller.requests import (
    AllocateProducerIdsRequest,
    AlterableConfig,
    AlterConfigOpType,
    AlterConfigsResource,
    AlterPartitionData,
    AlterPartitionRequest,
    BrokerHeartbeatRequest,
    BrokerRegistrationRequest,
    CreatableTopic,
    CreatePartitionsRequest,
    CreatePartitionsTopic,
    CreateTopicsRequest,
    DeleteTopicsRequest,
    ElectionType,
    ElectLeadersRequest,
    IncrementalAlterConfigsRequest,
    TopicPartition,
)
from controller.partition_change import BrokerState
from proto.config import ConfigError
from proto.errors import ErrorCode
from proto.metadata import (
    NO_LEADER,
    BrokerRegistrationChangeRecord,
    ConfigRecord,
    ConfigResourceType,
    Endpoint,
    LeaderRecoveryState,
    PartitionRecord,
    RegisterBrokerRecord,
    TopicRecord,
)
from proto.metadata_image import MetadataImage
from tests.unit.control_harness import Shell

SESSION_MS = ControllerConfig().broker_session_timeout_ms


def topic_configs(shell: Shell, topic: str) -> dict[str, str]:
    return dict(shell.manager.image.configs_for(ConfigResourceType.TOPIC, topic))


def alter_topic(
    shell: Shell, topic: str, *ops: AlterableConfig, validate_only: bool = False
) -> ErrorCode:
    response = shell.commit(shell.manager.handle_incremental_alter_configs(
        IncrementalAlterConfigsRequest(
            (AlterConfigsResource(ConfigResourceType.TOPIC, topic, ops),), validate_only
        ),
        0,
    ))
    (result,) = response.responses
    return result.error_code


# ---------------------------------------------------------------------- registration, heartbeat


def test_config_defaults_suit_a_local_cluster() -> None:
    config = ControllerConfig()
    assert (config.broker_heartbeat_interval_ms, config.broker_session_timeout_ms) == (500, 3000)
    assert config.producer_id_block_size == 1000
    with pytest.raises(ConfigError):
        ControllerConfig(broker_session_timeout_ms=100, broker_heartbeat_interval_ms=500)


def test_registration_writes_a_fenced_record_whose_offset_is_the_broker_epoch() -> None:
    shell = Shell()
    result = shell.manager.handle_broker_registration(
        BrokerRegistrationRequest(1, "inc-a", Endpoint("127.0.0.1", 9001), rack="r1"), 0
    )
    (record,) = result.records
    assert isinstance(record, RegisterBrokerRecord) and record.fenced
    assert result.response.broker_epoch == record.broker_epoch == 1
    shell.commit(result)
    assert shell.entries[-1][0] == 1  # the entry's offset is the epoch
    registration = shell.manager.image.brokers[1]
    assert registration.fenced and registration.rack == "r1"


def test_heartbeat_unfences_only_once_broker_has_applied_its_registration() -> None:
    shell = Shell()
    epoch = shell.register(1, 0).broker_epoch
    behind = shell.heartbeat(1, 100, offset=epoch - 1)
    assert (behind.is_caught_up, behind.is_fenced) == (False, True)
    assert shell.manager.image.brokers[1].fenced
    caught_up = shell.heartbeat(1, 200, offset=epoch)
    assert (caught_up.is_caught_up, caught_up.is_fenced) == (True, False)
    assert not shell.manager.image.brokers[1].fenced
    assert isinstance(shell.entries[-1][1][0], BrokerRegistrationChangeRecord)


def test_broker_that_wants_fence_stays_fenced() -> None:
    shell = Shell()
    epoch = shell.register(1, 0).broker_epoch
    response = shell.heartbeat(1, 100, offset=epoch, want_fence=True)
    assert response.is_fenced and shell.manager.image.brokers[1].fenced


def test_reregistration_with_same_incarnation_is_idempotent() -> None:
    shell = Shell()
    first = shell.register(1, 0, incarnation="same")
    entries = len(shell.entries)
    again = shell.manager.handle_broker_registration(
        BrokerRegistrationRequest(1, "same", Endpoint("127.0.0.1", 9001)), 100
    )
    assert again.records == () and again.response.broker_epoch == first.broker_epoch
    assert len(shell.entries) == entries


def test_new_incarnation_while_old_one_is_alive_is_a_duplicate_registration() -> None:
    shell = Shell()
    shell.start_brokers([1])
    response = shell.register(1, 1000, incarnation="other")
    assert response.error_code is ErrorCode.DUPLICATE_BROKER_REGISTRATION


def test_new_incarnation_after_session_expiry_replaces_registration_with_higher_epoch() -> None:
    shell = Shell()
    shell.start_brokers([1])
    old_epoch = shell.epochs[1]
    response = shell.register(1, SESSION_MS + 1, incarnation="restarted")
    assert response.error_code is ErrorCode.NONE and response.broker_epoch > old_epoch
    registration = shell.manager.image.brokers[1]
    assert registration.incarnation_id == "restarted" and registration.fenced


def test_new_incarnation_of_a_fenced_broker_registers_at_once() -> None:
    shell = Shell()
    shell.start_brokers([1])
    shell.heartbeat(1, 100, want_fence=True)
    assert shell.register(1, 200, incarnation="restarted").error_code is ErrorCode.NONE


def test_heartbeat_with_stale_epoch_is_rejected() -> None:
    shell = Shell()
    shell.start_brokers([1])
    response = shell.heartbeat(1, 100, epoch=shell.epochs[1] - 1)
    assert response.error_code is ErrorCode.STALE_BROKER_EPOCH


def test_heartbeat_from_unknown_broker_is_not_registered() -> None:
    shell = Shell()
    response = shell.heartbeat(7, 100, epoch=3)
    assert response.error_code is ErrorCode.BROKER_ID_NOT_REGISTERED


def test_next_deadline_is_the_earliest_session_expiry() -> None:
    shell = Shell()
    shell.start_brokers([1, 2], now_ms=0)
    shell.heartbeat(2, 1000)
    assert shell.manager.next_deadline_ms() == SESSION_MS


# ---------------------------------------------------------------------- fencing and elections


def test_session_expiry_fences_broker_and_moves_leadership_to_next_isr_replica_in_order() -> None:
    shell = Shell()
    shell.start_brokers([1, 2, 3])
    shell.create_topic("t", assignments=((1, 3, 2), (2, 1, 3)))
    before = shell.partition("t", 0)
    shell.heartbeat_all(SESSION_MS - 1, except_ids=[1])
    result = shell.manager.tick(SESSION_MS)
    shell.commit(result)
    assert shell.manager.image.brokers[1].fenced
    led = shell.partition("t", 0)
    assert (led.leader, led.isr) == (3, (3, 2))  # replica order, not id order
    assert led.leader_epoch == before.leader_epoch + 1
    follower = shell.partition("t", 1)
    assert (follower.leader, follower.isr) == (2, (2, 3))
    assert follower.leader_epoch == 0 and follower.partition_epoch == 1


def test_alive_brokers_are_not_fenced_by_tick() -> None:
    shell = Shell()
    shell.start_brokers([1])
    shell.heartbeat(1, SESSION_MS - 10)
    assert shell.manager.tick(SESSION_MS + 100).records == ()


def test_fencing_last_isr_member_leaves_partition_offline_with_isr_kept() -> None:
    shell = Shell()
    shell.start_brokers([1])
    shell.create_topic("t", partitions=1, replication_factor=1)
    shell.commit(shell.manager.tick(SESSION_MS))
    offline = shell.partition("t", 0)
    assert (offline.leader, offline.isr, offline.leader_epoch) == (NO_LEADER, (1,), 1)


def test_unfenced_last_isr_member_becomes_leader_again() -> None:
    shell = Shell()
    shell.start_brokers([1])
    shell.create_topic("t", partitions=1, replication_factor=1)
    shell.commit(shell.manager.tick(SESSION_MS))
    response = shell.heartbeat(1, SESSION_MS + 10)
    assert not response.is_fenced
    back = shell.partition("t", 0)
    assert (back.leader, back.isr, back.leader_epoch) == (1, (1,), 2)


def _partition_with_only_broker_1_in_isr(shell: Shell, configs: dict[str, str | None]) -> None:
    shell.start_brokers([1, 2])
    shell.create_topic("t", assignments=((1, 2),), configs=configs)
    assert shell.alter_isr("t", 0, (1,)).partitions[0].error_code is ErrorCode.NONE


def test_without_unclean_election_no_live_isr_member_means_offline() -> None:
    shell = Shell()
    _partition_with_only_broker_1_in_isr(shell, {})
    shell.heartbeat(2, SESSION_MS - 1)
    shell.commit(shell.manager.tick(SESSION_MS))
    state = shell.partition("t", 0)
    assert (state.leader, state.isr) == (NO_LEADER, (1,))


def test_unclean_election_when_enabled_elects_live_out_of_sync_replica() -> None:
    shell = Shell()
    _partition_with_only_broker_1_in_isr(shell, {"unclean.leader.election.enable": "true"})
    shell.heartbeat(2, SESSION_MS - 1)
    shell.commit(shell.manager.tick(SESSION_MS))
    state = shell.partition("t", 0)
    assert (state.leader, state.isr) == (2, (2,))
    assert state.leader_recovery_state is LeaderRecoveryState.RECOVERING


def test_controller_default_unclean_election_applies_to_topics_without_config() -> None:
    shell = Shell(ControllerConfig(unclean_leader_election_enable=True))
    _partition_with_only_broker_1_in_isr(shell, {})
    shell.heartbeat(2, SESSION_MS - 1)
    shell.commit(shell.manager.tick(SESSION_MS))
    assert shell.partition("t", 0).leader == 2


def test_enabling_unclean_election_elects_leader_for_offline_partition() -> None:
    shell = Shell()
    _partition_with_only_broker_1_in_isr(shell, {})
    shell.heartbeat(2, SESSION_MS - 1)
    shell.commit(shell.manager.tick(SESSION_MS))
    assert shell.partition("t", 0).leader == NO_LEADER
    set_unclean = AlterableConfig("unclean.leader.election.enable", AlterConfigOpType.SET, "true")
    assert alter_topic(shell, "t", set_unclean) is ErrorCode.NONE
    assert shell.partition("t", 0).leader == 2


def test_preferred_leader_returns_when_its_broker_is_back_and_in_sync() -> None:
    interval = 1000
    shell = Shell(ControllerConfig(leader_imbalance_check_interval_ms=interval))
    shell.start_brokers([1, 2])
    shell.create_topic("t", assignments=((1, 2),))
    shell.heartbeat(2, 2000)
    shell.commit(shell.manager.tick(SESSION_MS))  # broker 1 fenced: 2 leads
    assert shell.partition("t", 0).leader == 2
    shell.heartbeat(1, SESSION_MS + 10)  # back, unfenced, but not in the ISR yet
    shell.commit(shell.manager.tick(SESSION_MS + 20))
    assert shell.partition("t", 0).leader == 2
    assert shell.alter_isr("t", 0, (2, 1)).partitions[0].error_code is ErrorCode.NONE
    epoch = shell.partition("t", 0).leader_epoch
    shell.heartbeat_all(SESSION_MS + interval)
    shell.commit(shell.manager.tick(SESSION_MS + 2 * interval))
    state = shell.partition("t", 0)
    assert (state.leader, state.leader_epoch) == (1, epoch + 1)


def test_no_preferred_rebalance_when_disabled() -> None:
    shell = Shell(ControllerConfig(
        auto_leader_rebalance_enable=False, leader_imbalance_check_interval_ms=1000
    ))
    shell.start_brokers([1, 2])
    shell.create_topic("t", assignments=((1, 2),))
    shell.heartbeat(2, 2000)
    shell.commit(shell.manager.tick(SESSION_MS))
    shell.heartbeat(1, SESSION_MS + 10)
    shell.alter_isr("t", 0, (2, 1))
    shell.heartbeat_all(SESSION_MS + 500)
    shell.commit(shell.manager.tick(SESSION_MS + 3000))
    assert shell.partition("t", 0).leader == 2


# ---------------------------------------------------------------------- controlled shutdown


def test_controlled_shutdown_moves_leadership_then_lets_the_broker_go() -> None:
    shell = Shell()
    shell.start_brokers([1, 2])
    shell.create_topic("t", assignments=((1, 2), (2, 1)))
    first = shell.heartbeat(1, 100, want_shutdown=True)
    assert (first.is_fenced, first.should_shutdown) == (False, False)
    assert shell.manager.image.brokers[1].in_controlled_shutdown
    led = shell.partition("t", 0)
    assert (led.leader, led.isr) == (2, (2,))
    assert shell.partition("t", 1).isr == (2,)
    shell.heartbeat(2, 150)  # the other broker has applied the change
    done = shell.heartbeat(1, 200, want_shutdown=True)
    assert done.should_shutdown and done.is_fenced
    registration = shell.manager.image.brokers[1]
    assert registration.fenced and not registration.in_controlled_shutdown


def test_controlled_shutdown_waits_until_active_brokers_have_the_new_leaders() -> None:
    shell = Shell()
    shell.start_brokers([1, 2])
    shell.create_topic("t", assignments=((1, 2),))
    lagging = shell.committed.last_applied_offset
    shell.heartbeat(1, 100, want_shutdown=True)
    shell.heartbeat(2, 150, offset=lagging)
    assert not shell.heartbeat(1, 200, want_shutdown=True).should_shutdown
    shell.heartbeat(2, 250)
    assert shell.heartbeat(1, 300, want_shutdown=True).should_shutdown


def test_unfenced_broker_leading_nothing_shuts_down_at_once() -> None:
    shell = Shell()
    shell.start_brokers([1, 2])
    shell.create_topic("t", assignments=((2, 1),))
    response = shell.heartbeat(1, 100, want_shutdown=True)
    assert response.should_shutdown and response.is_fenced
    assert shell.partition("t", 0).isr == (2,)


def test_fenced_broker_asking_to_shut_down_may_go_at_once() -> None:
    shell = Shell()
    shell.register(1, 0)
    response = shell.heartbeat(1, 100, want_shutdown=True)
    assert response.should_shutdown and response.is_fenced


# ---------------------------------------------------------------------- topics


def test_create_topic_writes_topic_config_and_partition_records_atomically() -> None:
    shell = Shell(seed=3)
    shell.start_brokers([1, 2, 3])
    result = shell.manager.handle_create_topics(CreateTopicsRequest((CreatableTopic(
        "orders", 3, 2, configs={"retention.ms": "1000"}
    ),)), 0)
    kinds = [type(r) for r in result.records]
    assert kinds == [TopicRecord, ConfigRecord] + [PartitionRecord] * 3
    (topic,) = result.response.topics
    assert topic.error_code is ErrorCode.NONE and topic.topic_id
    assert (topic.num_partitions, topic.replication_factor) == (3, 2)
    configs = {c.name: c for c in topic.configs}
    assert configs["retention.ms"].value == "1000" and not configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "delete" and configs["cleanup.policy"].is_default
    for record in result.records[2:]:
        assert isinstance(record, PartitionRecord)
        assert record.isr == record.replicas and record.leader == record.replicas[0]
        assert (record.leader_epoch, record.partition_epoch) == (0, 0)


def test_initial_isr_is_the_active_assigned_replicas() -> None:
    shell = Shell()
    shell.start_brokers([1, 2])
    shell.register(3, 0)  # registered but fenced
    result = shell.create_topic("t", assignments=((3, 1, 2),))
    assert result.error_code is ErrorCode.NONE
    state = shell.partition("t", 0)
    assert (state.replicas, state.isr, state.leader) == ((3, 1, 2), (1, 2), 1)


def test_defaults_apply_when_counts_are_minus_one() -> None:
    shell = Shell(ControllerConfig(num_partitions=4, default_replication_factor=2))
    shell.start_brokers([1, 2])
    result = shell.create_topic("t")
    assert (result.num_partitions, result.replication_factor) == (4, 2)


@pytest.mark.parametrize(
    ("name", "kwargs", "code"),
    [
        ("bad name!", {}, ErrorCode.INVALID_TOPIC_EXCEPTION),
        ("", {}, ErrorCode.INVALID_TOPIC_EXCEPTION),
        ("x" * 250, {}, ErrorCode.INVALID_TOPIC_EXCEPTION),
        ("existing", {}, ErrorCode.TOPIC_ALREADY_EXISTS),
        ("my.topic", {}, ErrorCode.INVALID_TOPIC_EXCEPTION),  # collides with my_topic
        ("__cluster_metadata", {}, ErrorCode.INVALID_REQUEST),
        ("t", {"partitions": 0}, ErrorCode.INVALID_PARTITIONS),
        ("t", {"partitions": -3}, ErrorCode.INVALID_PARTITIONS),
        ("t", {"replication_factor": 0}, ErrorCode.INVALID_REPLICATION_FACTOR),
        ("t", {"replication_factor": 3}, ErrorCode.INVALID_REPLICATION_FACTOR),  # 2 live
        ("t", {"configs": {"no.such.config": "1"}}, ErrorCode.INVALID_CONFIG),
        ("t", {"configs": {"retention.ms": "soon"}}, ErrorCode.INVALID_CONFIG),
        ("t", {"configs": {"cleanup.policy": None}}, ErrorCode.INVALID_CONFIG),
        ("t", {"replication_factor": 2, "configs": {"min.insync.replicas": "3"}},
         ErrorCode.INVALID_CONFIG),
        ("t", {"partitions": 1, "assignments": ((1,),)}, ErrorCode.INVALID_REQUEST),
        ("t", {"assignments": ((1, 1),)}, ErrorCode.INVALID_REPLICA_ASSIGNMENT),
        ("t", {"assignments": ((1, 9),)}, ErrorCode.INVALID_REPLICA_ASSIGNMENT),
    ],
)
def test_create_topic_validation_errors(name: str, kwargs: dict, code: ErrorCode) -> None:
    shell = Shell()
    shell.start_brokers([1, 2])
    shell.register(3, 0)  # registered, fenced: does not count towards the replication factor
    assert shell.create_topic("existing").error_code is ErrorCode.NONE
    assert shell.create_topic("my_topic").error_code is ErrorCode.NONE
    entries = len(shell.entries)
    result = shell.create_topic(name, **kwargs)
    assert result.error_code is code, result
    assert result.error_message
    assert len(shell.entries) == entries


def test_duplicate_names_in_one_request_are_rejected_while_others_succeed() -> None:
    shell = Shell()
    shell.start_brokers([1])
    response = shell.commit(shell.manager.handle_create_topics(CreateTopicsRequest((
        CreatableTopic("a"), CreatableTopic("b"), CreatableTopic("a"),
    )), 0))
    codes = [t.error_code for t in response.topics]
    assert codes == [ErrorCode.INVALID_REQUEST, ErrorCode.NONE, ErrorCode.INVALID_REQUEST]
    assert shell.manager.image.topic_names() == ("b",)


def test_validate_only_writes_nothing_but_reports_the_layout() -> None:
    shell = Shell()
    shell.start_brokers([1, 2])
    result = shell.manager.handle_create_topics(
        CreateTopicsRequest((CreatableTopic("t", 3, 2),), validate_only=True), 0
    )
    assert result.records == ()
    (topic,) = result.response.topics
    assert (topic.error_code, topic.num_partitions, topic.replication_factor) == (
        ErrorCode.NONE, 3, 2,
    )
    assert shell.manager.image.topic("t") is None


def test_placement_spreads_replicas_and_leaders_evenly() -> None:
    shell = Shell(seed=11)
    shell.start_brokers([1, 2, 3])
    shell.create_topic("t", partitions=6, replication_factor=2)
    topic = shell.manager.image.topic("t")
    assert topic is not None
    leaders = [topic.partitions[p].leader for p in range(6)]
    replicas = [b for p in range(6) for b in topic.partitions[p].replicas]
    assert sorted(leaders.count(b) for b in (1, 2, 3)) == [2, 2, 2]
    assert sorted(replicas.count(b) for b in (1, 2, 3)) == [4, 4, 4]


def test_create_topic_rejects_replication_factor_above_live_brokers() -> None:
    shell = Shell()
    shell.start_brokers([1, 2, 3])
    shell.heartbeat_all(SESSION_MS - 1, except_ids=[3])
    shell.commit(shell.manager.tick(SESSION_MS))
    result = shell.create_topic("t", replication_factor=3)
    assert result.error_code is ErrorCode.INVALID_REPLICATION_FACTOR


def test_delete_topic_writes_remove_record_and_unknown_topic_is_an_error() -> None:
    shell = Shell()
    shell.start_brokers([1])
    created = shell.create_topic("t", configs={"retention.ms": "5"})
    response = shell.commit(shell.manager.handle_delete_topics(
        DeleteTopicsRequest(names=("t", "nope")), 0
    ))
    codes = [(r.name, r.topic_id, r.error_code) for r in response.topics]
    assert codes == [
        ("t", created.topic_id, ErrorCode.NONE),
        ("nope", "", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    ]
    assert shell.manager.image.topic("t") is None
    assert topic_configs(shell, "t") == {}
    assert shell.create_topic("t").error_code is ErrorCode.NONE  # the name is free again


def test_delete_topic_by_id() -> None:
    shell = Shell()
    shell.start_brokers([1])
    created = shell.create_topic("t")
    response = shell.commit(shell.manager.handle_delete_topics(
        DeleteTopicsRequest(topic_ids=(created.topic_id, "00000000-0000-4000-8000-000000000000")),
        0,
    ))
    assert [r.error_code for r in response.topics] == [ErrorCode.NONE, ErrorCode.UNKNOWN_TOPIC_ID]


def test_create_partitions_grows_topic_and_continues_the_spread() -> None:
    shell = Shell(seed=5)
    shell.start_brokers([1, 2, 3])
    shell.create_topic("t", partitions=2, replication_factor=2)
    response = shell.commit(shell.manager.handle_create_partitions(
        CreatePartitionsRequest((CreatePartitionsTopic("t", 6),)), 0
    ))
    assert response.topics[0].error_code is ErrorCode.NONE
    topic = shell.manager.image.topic("t")
    assert topic is not None and len(topic.partitions) == 6
    leaders = [topic.partitions[p].leader for p in range(6)]
    assert sorted(leaders.count(b) for b in (1, 2, 3)) == [2, 2, 2]
    assert all(len(topic.partitions[p].replicas) == 2 for p in range(6))


@pytest.mark.parametrize(
    ("topic", "count", "assignments", "code"),
    [
        ("t", 2, None, ErrorCode.INVALID_PARTITIONS),
        ("t", 1, None, ErrorCode.INVALID_PARTITIONS),
        ("nope", 5, None, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ("t", 4, ((1, 2),), ErrorCode.INVALID_REPLICA_ASSIGNMENT),  # one for two partitions
        ("t", 3, ((1,),), ErrorCode.INVALID_REPLICA_ASSIGNMENT),  # RF 1 != 2
    ],
)
def test_create_partitions_errors(
    topic: str, count: int, assignments: tuple[tuple[int, ...], ...] | None, code: ErrorCode
) -> None:
    shell = Shell()
    shell.start_brokers([1, 2])
    shell.create_topic("t", partitions=2, replication_factor=2)
    response = shell.commit(shell.manager.handle_create_partitions(
        CreatePartitionsRequest((CreatePartitionsTopic(topic, count, assignments),)), 0
    ))
    assert response.topics[0].error_code is code


def test_create_partitions_with_manual_assignment() -> None:
    shell = Shell()
    shell.start_brokers([1, 2])
    shell.create_topic("t", partitions=1, replication_factor=2)
    response = shell.commit(shell.manager.handle_create_partitions(
        CreatePartitionsRequest((CreatePartitionsTopic("t", 2, ((2, 1),)),)), 0
    ))
    assert response.topics[0].error_code is ErrorCode.NONE
    assert shell.partition("t", 1).replicas == (2, 1)


# ---------------------------------------------------------------------- configs


def test_alter_configs_set_then_delete_reverts_to_default() -> None:
    shell = Shell()
    shell.start_brokers([1])
    shell.create_topic("t")
    set_op = AlterableConfig("retention.ms", AlterConfigOpType.SET, "1000")
    assert alter_topic(shell, "t", set_op) is ErrorCode.NONE
    assert topic_configs(shell, "t") == {"retention.ms": "1000"}
    delete_op = AlterableConfig("retention.ms", AlterConfigOpType.DELETE)
    assert alter_topic(shell, "t", delete_op) is ErrorCode.NONE
    assert topic_configs(shell, "t") == {}
    assert shell.entries[-1][1] == (
        ConfigRecord(ConfigResourceType.TOPIC, "t", "retention.ms", None),
    )


def test_alter_configs_append_and_subtract_edit_list_configs() -> None:
    shell = Shell()
    shell.start_brokers([1])
    shell.create_topic("t")
    append = AlterableConfig("cleanup.policy", AlterConfigOpType.APPEND, "compact")
    assert alter_topic(shell, "t", append) is ErrorCode.NONE
    assert topic_configs(shell, "t")["cleanup.policy"] == "delete,compact"
    subtract = AlterableConfig("cleanup.policy", AlterConfigOpType.SUBTRACT, "delete")
    assert alter_topic(shell, "t", subtract) is ErrorCode.NONE
    assert topic_configs(shell, "t")["cleanup.policy"] == "compact"
    not_a_list = AlterableConfig("retention.ms", AlterConfigOpType.APPEND, "5")
    assert alter_topic(shell, "t", not_a_list) is ErrorCode.INVALID_REQUEST


def test_alter_configs_errors() -> None:
    shell = Shell()
    shell.start_brokers([1, 2])
    shell.create_topic("t", replication_factor=2)
    too_high = AlterableConfig("min.insync.replicas", AlterConfigOpType.SET, "3")
    assert alter_topic(shell, "t", too_high) is ErrorCode.INVALID_CONFIG
    ok = AlterableConfig("min.insync.replicas", AlterConfigOpType.SET, "2")
    assert alter_topic(shell, "t", ok) is ErrorCode.NONE
    unknown = AlterableConfig("retention.mss", AlterConfigOpType.SET, "1")
    assert alter_topic(shell, "t", unknown) is ErrorCode.INVALID_CONFIG
    bad_value = AlterableConfig("retention.ms", AlterConfigOpType.SET, "-5")
    assert alter_topic(shell, "t", bad_value) is ErrorCode.INVALID_CONFIG
    null = AlterableConfig("retention.ms", AlterConfigOpType.SET, None)
    assert alter_topic(shell, "t", null) is ErrorCode.INVALID_REQUEST
    assert alter_topic(shell, "nope", ok) is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_alter_configs_validate_only_and_no_op_write_nothing() -> None:
    shell = Shell()
    shell.start_brokers([1])
    shell.create_topic("t", configs={"retention.ms": "7"})
    entries = len(shell.entries)
    set_op = AlterableConfig("retention.ms", AlterConfigOpType.SET, "9")
    assert alter_topic(shell, "t", set_op, validate_only=True) is ErrorCode.NONE
    same = AlterableConfig("retention.ms", AlterConfigOpType.SET, "7")
    assert alter_topic(shell, "t", same) is ErrorCode.NONE
    assert len(shell.entries) == entries


def test_broker_configs_accept_known_names_for_a_broker_or_the_cluster_default() -> None:
    shell = Shell()
    def alter(name: str, config: str, value: str) -> ErrorCode:
        response = shell.commit(shell.manager.handle_incremental_alter_configs(
            IncrementalAlterConfigsRequest((AlterConfigsResource(
                ConfigResourceType.BROKER, name,
                (AlterableConfig(config, AlterConfigOpType.SET, value),),
            ),)),
            0,
        ))
        return response.responses[0].error_code

    assert alter("", "log.retention.ms", "1000") is ErrorCode.NONE
    assert alter("1", "min.insync.replicas", "2") is ErrorCode.NONE
    assert alter("1", "no.such.broker.config", "2") is ErrorCode.INVALID_CONFIG
    assert alter("broker-1", "log.retention.ms", "1") is ErrorCode.INVALID_REQUEST
    assert shell.manager.image.configs_for(ConfigResourceType.BROKER, "") == {
        "log.retention.ms": "1000"
    }


# ---------------------------------------------------------------------- AlterPartition


def _alter(shell: Shell, *, broker_epoch: int | None = None, leader_epoch: int | None = None,
           partition_epoch: int | None = None, isr: tuple[int | BrokerState, ...] = (1,)):
    state = shell.partition("t", 0)
    topic = shell.manager.image.topic("t")
    assert topic is not None
    return shell.commit(shell.manager.handle_alter_partition(AlterPartitionRequest(
        state.leader,
        shell.epochs[state.leader] if broker_epoch is None else broker_epoch,
        (AlterPartitionData(
            topic.topic_id, 0,
            state.leader_epoch if leader_epoch is None else leader_epoch,
            isr,
            state.partition_epoch if partition_epoch is None else partition_epoch,
        ),),
    ), 0))


def _leader_1_with_isr_1_2(shell: Shell) -> None:
    shell.start_brokers([1, 2])
    shell.create_topic("t", assignments=((1, 2),))
    _alter(shell, isr=(1,))
    _alter(shell, isr=(1, 2))  # leader epoch stays 0, partition epoch 2


def test_alter_partition_shrinks_isr_and_returns_new_state() -> None:
    shell = Shell()
    shell.start_brokers([1, 2])
    shell.create_topic("t", assignments=((1, 2),))
    response = _alter(shell, isr=(1,))
    (result,) = response.partitions
    assert result.error_code is ErrorCode.NONE
    assert (result.leader_id, result.leader_epoch, result.isr, result.partition_epoch) == (
        1, 0, (1,), 1,
    )


def test_alter_partition_with_stale_leader_epoch_is_fenced() -> None:
    shell = Shell()
    _leader_1_with_isr_1_2(shell)
    topic = shell.manager.image.topic("t")
    assert topic is not None
    shell.heartbeat(1, 10, want_shutdown=True)  # leadership moves to 2 at leader epoch 1
    assert shell.partition("t", 0).leader_epoch == 1
    response = shell.commit(shell.manager.handle_alter_partition(AlterPartitionRequest(
        1, shell.epochs[1], (AlterPartitionData(topic.topic_id, 0, 0, (1, 2), 2),),
    ), 20))
    assert response.partitions[0].error_code is ErrorCode.FENCED_LEADER_EPOCH


def test_alter_partition_with_stale_partition_epoch_is_invalid_update_version() -> None:
    shell = Shell()
    _leader_1_with_isr_1_2(shell)
    response = _alter(shell, partition_epoch=1)
    (result,) = response.partitions
    assert result.error_code is ErrorCode.INVALID_UPDATE_VERSION
    assert result.partition_epoch == 2  # the current state comes back


def test_alter_partition_rejects_fenced_or_stale_epoch_isr_members() -> None:
    shell = Shell()
    shell.start_brokers([1, 2])
    shell.create_topic("t", assignments=((1, 2),))
    _alter(shell, isr=(1,))
    stale = BrokerState(2, shell.epochs[2] - 1)
    assert _alter(shell, isr=(1, stale)).partitions[0].error_code is ErrorCode.INELIGIBLE_REPLICA
    shell.heartbeat(2, 10, want_fence=True)
    assert _alter(shell, isr=(1, 2)).partitions[0].error_code is ErrorCode.INELIGIBLE_REPLICA


def test_alter_partition_from_stale_broker_epoch_is_rejected_as_a_whole() -> None:
    shell = Shell()
    _leader_1_with_isr_1_2(shell)
    response = _alter(shell, broker_epoch=shell.epochs[1] - 1)
    assert response.error_code is ErrorCode.STALE_BROKER_EPOCH and response.partitions == ()


def test_alter_partition_for_unknown_topic_id() -> None:
    shell = Shell()
    shell.start_brokers([1])
    response = shell.commit(shell.manager.handle_alter_partition(AlterPartitionRequest(
        1, shell.epochs[1], (AlterPartitionData("00000000-0000-4000-8000-000000000000", 0, 0,
                                                (1,), 0),),
    ), 0))
    assert response.partitions[0].error_code is ErrorCode.UNKNOWN_TOPIC_ID


def test_alter_partition_from_a_non_leader_is_rejected() -> None:
    shell = Shell()
    _leader_1_with_isr_1_2(shell)
    topic = shell.manager.image.topic("t")
    assert topic is not None
    response = shell.commit(shell.manager.handle_alter_partition(AlterPartitionRequest(
        2, shell.epochs[2], (AlterPartitionData(topic.topic_id, 0, 0, (2,), 2),),
    ), 0))
    assert response.partitions[0].error_code is ErrorCode.INVALID_REQUEST


# ---------------------------------------------------------------------- ElectLeaders


def test_elect_preferred_leader_errors_and_success() -> None:
    shell = Shell()
    shell.start_brokers([1, 2])
    shell.create_topic("t", assignments=((1, 2),))
    request = ElectLeadersRequest(ElectionType.PREFERRED, (TopicPartition("t", 0),
                                                           TopicPartition("t", 9)))
    response = shell.commit(shell.manager.handle_elect_leaders(request, 0))
    assert [r.error_code for r in response.partitions] == [
        ErrorCode.ELECTION_NOT_NEEDED, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    ]
    shell.heartbeat(1, 10, want_shutdown=True)  # leadership moves to 2; 1 is shutting down
    response = shell.commit(shell.manager.handle_elect_leaders(request, 20))
    assert response.partitions[0].error_code is ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE


def test_elect_all_preferred_leaders_leaves_out_partitions_that_need_none() -> None:
    shell = Shell(ControllerConfig(auto_leader_rebalance_enable=False))
    shell.start_brokers([1, 2])
    shell.create_topic("t", assignments=((1, 2), (2, 1)))
    shell.heartbeat(2, 2000)
    shell.commit(shell.manager.tick(SESSION_MS))
    shell.heartbeat(1, SESSION_MS + 1)
    shell.alter_isr("t", 0, (2, 1))
    response = shell.commit(shell.manager.handle_elect_leaders(
        ElectLeadersRequest(ElectionType.PREFERRED), SESSION_MS + 2
    ))
    assert [(r.topic, r.partition, r.error_code) for r in response.partitions] == [
        ("t", 0, ErrorCode.NONE)
    ]
    assert shell.partition("t", 0).leader == 1


def test_admin_unclean_election_elects_an_out_of_sync_replica() -> None:
    shell = Shell()
    _partition_with_only_broker_1_in_isr(shell, {})
    shell.heartbeat(2, SESSION_MS - 1)
    shell.commit(shell.manager.tick(SESSION_MS))
    response = shell.commit(shell.manager.handle_elect_leaders(
        ElectLeadersRequest(ElectionType.UNCLEAN, (TopicPartition("t", 0),)), SESSION_MS
    ))
    assert response.partitions[0].error_code is ErrorCode.NONE
    assert (shell.partition("t", 0).leader, shell.partition("t", 0).isr) == (2, (2,))


# ---------------------------------------------------------------------- producer ids


def test_producer_id_blocks_are_disjoint_and_increasing_also_across_failover() -> None:
    shell = Shell()
    shell.start_brokers([1, 2])
    blocks: list[tuple[int, int]] = []
    for broker_id in (1, 2, 1):
        response = shell.commit(shell.manager.handle_allocate_producer_ids(
            AllocateProducerIdsRequest(broker_id, shell.epochs[broker_id]), 0
        ))
        blocks.append((response.producer_id_start, response.producer_id_len))
    shell.failover(100)
    response = shell.commit(shell.manager.handle_allocate_producer_ids(
        AllocateProducerIdsRequest(2, shell.epochs[2]), 100
    ))
    blocks.append((response.producer_id_start, response.producer_id_len))
    assert blocks == [(0, 1000), (1000, 1000), (2000, 1000), (3000, 1000)]


def test_producer_ids_for_a_stale_broker_epoch_are_refused() -> None:
    shell = Shell()
    shell.start_brokers([1])
    response = shell.commit(shell.manager.handle_allocate_producer_ids(
        AllocateProducerIdsRequest(1, shell.epochs[1] + 5), 0
    ))
    assert response.error_code is ErrorCode.STALE_BROKER_EPOCH


# ---------------------------------------------------------------------- failover, standby


def test_new_active_controller_gives_every_broker_a_fresh_session() -> None:
    shell = Shell()
    shell.start_brokers([1, 2])
    shell.failover(10_000)  # long after the sessions began
    assert shell.manager.tick(10_000).records == ()
    assert shell.manager.next_deadline_ms() == 10_000 + SESSION_MS
    shell.heartbeat(1, 12_000)
    shell.commit(shell.manager.tick(10_000 + SESSION_MS))
    assert shell.manager.image.brokers[2].fenced and not shell.manager.image.brokers[1].fenced


def test_broker_epochs_stay_monotonic_across_failover() -> None:
    shell = Shell()
    shell.start_brokers([1])
    old_epoch = shell.epochs[1]
    shell.failover(100)
    response = shell.register(1, 100 + SESSION_MS + 1, incarnation="after-failover")
    assert response.broker_epoch > old_epoch
    assert response.broker_epoch == shell.entries[-1][0]


def test_standby_answers_not_controller_to_every_request() -> None:
    manager = ControlManager(rng=random.Random(0))
    requests = [
        (manager.handle_broker_registration,
         BrokerRegistrationRequest(1, "i", Endpoint("h", 1))),
        (manager.handle_broker_heartbeat, BrokerHeartbeatRequest(1, 1, 1)),
        (manager.handle_create_topics, CreateTopicsRequest((CreatableTopic("t"),))),
        (manager.handle_delete_topics, DeleteTopicsRequest(("t",))),
        (manager.handle_create_partitions,
         CreatePartitionsRequest((CreatePartitionsTopic("t", 2),))),
        (manager.handle_incremental_alter_configs, IncrementalAlterConfigsRequest(())),
        (manager.handle_allocate_producer_ids, AllocateProducerIdsRequest(1, 1)),
        (manager.handle_elect_leaders, ElectLeadersRequest(ElectionType.PREFERRED)),
        (manager.handle_alter_partition, AlterPartitionRequest(1, 1, ())),
    ]
    for handle, request in requests:
        result = handle(request, 0)  # type: ignore[operator]
        assert result.records == ()
        assert result.response.error_code is ErrorCode.NOT_CONTROLLER, handle
    assert manager.tick(0).records == () and manager.next_deadline_ms() is None


def test_deactivate_drops_uncommitted_state() -> None:
    shell = Shell()
    shell.start_brokers([1])
    uncommitted = shell.manager.handle_create_topics(
        CreateTopicsRequest((CreatableTopic("lost"),)), 0
    )
    assert uncommitted.records and shell.manager.image.topic("lost") is not None
    shell.manager.deactivate()
    assert not shell.manager.is_active
    shell.manager.activate(shell.committed, 0, next_offset=shell.manager.next_offset + 1)
    assert shell.manager.image.topic("lost") is None
    assert shell.create_topic("lost").error_code is ErrorCode.NONE


def test_activate_does_not_modify_the_committed_image() -> None:
    committed = MetadataImage()
    manager = ControlManager(rng=random.Random(0))
    manager.activate(committed, 0)
    manager.handle_broker_registration(BrokerRegistrationRequest(1, "i", Endpoint("h", 1)), 0)
    assert committed == MetadataImage()
