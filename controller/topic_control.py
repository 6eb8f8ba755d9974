"""Topic creation and growth on the controller, as pure functions (part of Kafka's
`ReplicationControlManager.createTopic` / `createPartitions`).

Theory of operation
-------------------
Each function validates one item of a CreateTopics or CreatePartitions request against a
metadata image and returns the records that carry it out, or raises the typed error for that
item. Nothing is written or kept here; `ControlManager` adds the records to its result.

Creating a topic (KAFKA_SEMANTICS §5.6, §9):
1. the name: legal characters and length, not `__cluster_metadata`, not an existing topic
   (TOPIC_ALREADY_EXISTS) and no '.'/'_' collision with one (`proto.topic_names`). Internal
   names such as `__consumer_offsets` are allowed: brokers create them;
2. placement: manual assignments (then both counts must be -1, as in Kafka), or
   `num_partitions` / `replication_factor` (-1 = the controller's defaults) placed over the
   active brokers by `controller.placement` (1 ≤ RF ≤ active brokers);
3. configs: validated against TOPIC_CONFIG; `min.insync.replicas` ≤ RF;
4. records: TopicRecord, ConfigRecords (sorted by name), PartitionRecords 0..n-1 with
   ISR = the active assigned replicas, leader = the first of them, epochs 0.
With validate_only, everything is checked but no records (and no topic id) are produced.

Adding partitions keeps existing assignments and continues the spread (or validates manual
assignments of the new partitions, with the topic's replication factor).
"""

from __future__ import annotations

import random

from controller import config_control
from controller.placement import (
    InvalidReplicaAssignmentError,
    assign_new_partitions,
    assign_replicas,
    new_partition_record,
    validate_manual_assignment,
    validate_partition_count,
    validate_partition_increase,
)
from controller.requests import CreatableTopic, CreatableTopicResult, CreatePartitionsTopic
from proto.errors import InvalidRequestError, UnknownTopicOrPartitionError
from proto.metadata import (
    ConfigRecord,
    ConfigResourceType,
    MetadataRecord,
    TopicRecord,
    new_uuid,
)
from proto.metadata_image import MetadataImage
from proto.topic_names import validate_new_topic_name


def plan_new_topic(
    image: MetadataImage,
    topic: CreatableTopic,
    *,
    default_num_partitions: int,
    default_replication_factor: int,
    config_defaults: dict[str, str | None],
    rng: random.Random,
    validate_only: bool,
) -> tuple[list[MetadataRecord], CreatableTopicResult]:
    """The records that create `topic`, and its successful result.

    Args:
        config_defaults: cluster defaults reported for configs the topic does not set.
        rng: placement start and topic id.

    Raises:
        InvalidTopicError, TopicAlreadyExistsError, InvalidRequestError (name, counts with
        assignments), InvalidPartitionsError, InvalidReplicationFactorError,
        InvalidReplicaAssignmentError, ConfigError (INVALID_CONFIG).
    """
    validate_new_topic_name(topic.name, image.topic_names())
    active = image.active_broker_ids()
    if topic.assignments is not None:
        if topic.num_partitions != -1 or topic.replication_factor != -1:
            raise InvalidRequestError(
                "Both num_partitions and replication_factor must be -1 with assignments."
            )
        assignment = validate_manual_assignment(
            topic.assignments,
            registered_brokers=image.registered_broker_ids(),
            active_brokers=active,
        )
    else:
        num_partitions = topic.num_partitions
        if num_partitions == -1:
            num_partitions = default_num_partitions
        replication_factor = topic.replication_factor
        if replication_factor == -1:
            replication_factor = default_replication_factor
        validate_partition_count(num_partitions)
        assignment = assign_replicas(
            active,
            num_partitions=num_partitions,
            replication_factor=replication_factor,
            rng=rng,
        )
    replication_factor = len(assignment[0])
    configs = config_control.validate_new_topic_configs(topic.configs, replication_factor)
    topic_id = "" if validate_only else _new_topic_id(image, rng)
    records: list[MetadataRecord] = []
    if not validate_only:
        records.append(TopicRecord(topic.name, topic_id))
        records.extend(
            ConfigRecord(ConfigResourceType.TOPIC, topic.name, name, value)
            for name, value in configs.items()
        )
        records.extend(
            new_partition_record(topic_id, partition_id, replicas, active)
            for partition_id, replicas in enumerate(assignment)
        )
    result = CreatableTopicResult(
        name=topic.name,
        topic_id=topic_id,
        num_partitions=len(assignment),
        replication_factor=replication_factor,
        configs=config_control.effective_topic_configs(configs, config_defaults),
    )
    return records, result


def _new_topic_id(image: MetadataImage, rng: random.Random) -> str:
    while True:
        topic_id = new_uuid(rng)
        if topic_id not in image.topics_by_id:
            return topic_id


def plan_new_partitions(
    image: MetadataImage, topic: CreatePartitionsTopic, rng: random.Random
) -> list[MetadataRecord]:
    """The PartitionRecords that grow `topic.name` to `topic.count` partitions.

    Raises:
        UnknownTopicOrPartitionError, InvalidPartitionsError (not an increase),
        InvalidReplicationFactorError (too few active brokers), InvalidReplicaAssignmentError.
    """
    existing_topic = image.topic(topic.name)
    if existing_topic is None:
        raise UnknownTopicOrPartitionError(f"Topic {topic.name} does not exist.")
    partitions = existing_topic.partitions
    current = len(partitions)
    validate_partition_increase(current, topic.count, topic.name)
    existing = [partitions[p].replicas for p in sorted(partitions)]
    active = image.active_broker_ids()
    if topic.assignments is not None:
        if len(topic.assignments) != topic.count - current:
            raise InvalidReplicaAssignmentError(
                f"Attempted to add {topic.count - current} additional partition(s), but "
                f"{len(topic.assignments)} assignment(s) were specified."
            )
        new = validate_manual_assignment(
            topic.assignments,
            registered_brokers=image.registered_broker_ids(),
            active_brokers=active,
            replication_factor=len(existing[0]),
            first_partition_id=current,
        )
    else:
        new = assign_new_partitions(
            existing, active, new_partition_count=topic.count, rng=rng, topic=topic.name
        )
    return [
        new_partition_record(existing_topic.topic_id, current + i, replicas, active)
        for i, replicas in enumerate(new)
    ]
