"""Dynamic configs on the controller (Kafka's `ConfigurationControlManager`), as pure functions.

Theory of operation
-------------------
Dynamic configs live in the metadata image as ConfigRecords, per resource: a topic (by name)
or a broker (decimal id, or "" for the cluster-wide default). This module validates what
CreateTopics and IncrementalAlterConfigs ask for and says which ConfigRecords to write; it
never writes or keeps anything itself.

- Topic configs are checked against `proto.topic_config.TOPIC_CONFIG` (unknown name or bad
  value → INVALID_CONFIG). Values are stored as the strings given, like Kafka.
- `min.insync.replicas` set on a topic may not exceed its replication factor (INVALID_CONFIG).
  Kafka itself accepts it and then fails every acks=all write; Rafka rejects it up front.
- Broker configs: Rafka has no broker-wide dynamic reconfiguration yet, so `BROKER_CONFIG`
  lists the few names the controller and brokers may act on, with Kafka's broker names and
  defaults. Anything else is INVALID_CONFIG.
- IncrementalAlterConfigs: SET parses and validates the value; DELETE reverts to the default
  (a ConfigRecord with value None); APPEND/SUBTRACT edit list-typed configs item by item, starting
  from the current value or else the default (INVALID_REQUEST for other types, as Kafka). Ops
  apply in order; a no-op change writes no record.
- The effective `unclean.leader.election.enable` of a topic: the topic's config, else the
  cluster-wide broker default (resource ""), else the controller's configured default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.requests import (
    AlterableConfig,
    AlterConfigOpType,
    AlterConfigsResource,
    CreatableTopicConfigs,
)
from proto.broker_config import DYNAMIC_BROKER_CONFIG
from proto.config import ConfigDef, ConfigError, ConfigType
from proto.errors import InvalidRequestError, UnknownTopicOrPartitionError
from proto.metadata import ConfigRecord, ConfigResourceType
from proto.metadata_image import MetadataImage
from proto.topic_config import TOPIC_CONFIG

MIN_INSYNC_REPLICAS = "min.insync.replicas"
UNCLEAN_LEADER_ELECTION_ENABLE = "unclean.leader.election.enable"

# Dynamic broker configs the controller accepts: the dynamic subset of the broker's table
# (proto/broker_config.py), with Kafka's broker names and defaults.
BROKER_CONFIG = DYNAMIC_BROKER_CONFIG


def validate_new_topic_configs(
    configs: Mapping[str, str | None], replication_factor: int
) -> dict[str, str]:
    """The configs of a CreateTopics entry, validated; sorted by name.

    Raises:
        ConfigError: unknown name, null or invalid value, min.insync.replicas > RF
            (all INVALID_CONFIG).
    """
    validated: dict[str, str] = {}
    for name in sorted(configs):
        value = configs[name]
        if value is None:
            raise ConfigError(f"Null value not supported for topic configs: {name}")
        TOPIC_CONFIG.parse_value(name, value)
        validated[name] = value
    check_min_insync_replicas(validated, replication_factor)
    return validated


def check_min_insync_replicas(configs: Mapping[str, str], replication_factor: int) -> None:
    """Raises ConfigError if the topic's min.insync.replicas exceeds its replication factor."""
    value = configs.get(MIN_INSYNC_REPLICAS)
    if value is None:
        return
    min_insync = TOPIC_CONFIG.parse_value(MIN_INSYNC_REPLICAS, value)
    if min_insync > replication_factor:
        raise ConfigError(
            f"{MIN_INSYNC_REPLICAS}={min_insync} is larger than the replication factor "
            f"{replication_factor}"
        )


def effective_topic_configs(
    configs: Mapping[str, str], defaults: Mapping[str, str | None]
) -> tuple[CreatableTopicConfigs, ...]:
    """Every topic config with its value: the topic's own, else `defaults`, else the table's."""
    result: list[CreatableTopicConfigs] = []
    for name in TOPIC_CONFIG.names:
        if name in configs:
            result.append(CreatableTopicConfigs(name, configs[name], is_default=False))
        elif name in defaults:
            result.append(CreatableTopicConfigs(name, defaults[name], is_default=True))
        else:
            default = format_config_value(TOPIC_CONFIG.key(name).default)
            result.append(CreatableTopicConfigs(name, default, is_default=True))
    return tuple(result)


def format_config_value(value: Any) -> str | None:
    """A parsed value in Kafka's string form ("true", "delete,compact", None)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def plan_config_changes(
    image: MetadataImage, resource: AlterConfigsResource
) -> tuple[ConfigRecord, ...]:
    """The ConfigRecords for one resource of IncrementalAlterConfigs (none if nothing changes).

    Raises:
        UnknownTopicOrPartitionError: a topic resource that does not exist.
        InvalidRequestError: a bad broker resource name, a null value for SET/APPEND/SUBTRACT,
            APPEND/SUBTRACT on a non-list config.
        ConfigError: unknown config name, invalid value, min.insync.replicas > RF.
    """
    kind, name = resource.resource_type, resource.resource_name
    if kind is ConfigResourceType.TOPIC:
        topic = image.topic(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(f"Topic {name} does not exist.")
        table = TOPIC_CONFIG
    elif kind is ConfigResourceType.BROKER:
        if name and not (name.isascii() and name.isdigit()):
            raise InvalidRequestError(f"Invalid broker name {name!r}: expected an id or \"\".")
        table = BROKER_CONFIG
    else:
        raise InvalidRequestError(f"Unsupported config resource type {kind!r}")
    current = dict(image.configs_for(kind, name))
    wanted = dict(current)
    for op in resource.configs:
        _apply_op(table, wanted, op)
    if kind is ConfigResourceType.TOPIC:
        assert topic is not None
        replication_factor = len(topic.partitions[0].replicas) if topic.partitions else 0
        check_min_insync_replicas(wanted, replication_factor)
    return tuple(
        ConfigRecord(kind, name, key, wanted.get(key))
        for key in sorted(set(current) | set(wanted))
        if current.get(key) != wanted.get(key)
    )


def _apply_op(table: ConfigDef, values: dict[str, str], op: AlterableConfig) -> None:
    key = table.key(op.name)  # ConfigError (INVALID_CONFIG) naming the closest valid key
    if op.op is AlterConfigOpType.DELETE:
        values.pop(op.name, None)
        return
    if op.value is None:
        raise InvalidRequestError(f"Null value not supported for: {op.name}")
    if op.op is AlterConfigOpType.SET:
        table.parse_value(op.name, op.value)
        values[op.name] = op.value
        return
    if key.type is not ConfigType.LIST:
        raise InvalidRequestError(
            f"Can't {op.op.name} to key {op.name} because its type is not LIST."
        )
    current = values.get(op.name)
    base: list[str] = (
        list(table.parse_value(op.name, current)) if current is not None
        else [str(item) for item in (key.default or [])]
    )
    items = table.parse_value(op.name, op.value)
    if op.op is AlterConfigOpType.APPEND:
        merged = base + [item for item in items if item not in base]
    else:
        merged = [item for item in base if item not in items]
    joined = ",".join(merged)
    table.parse_value(op.name, joined)
    values[op.name] = joined


def unclean_leader_election_enabled(image: MetadataImage, topic: str, default: bool) -> bool:
    """The effective unclean.leader.election.enable of a topic (topic, cluster, controller)."""
    value = image.topic_config(topic, UNCLEAN_LEADER_ELECTION_ENABLE)
    if value is None:
        value = image.configs_for(ConfigResourceType.BROKER, "").get(
            UNCLEAN_LEADER_ELECTION_ENABLE
        )
    if value is None:
        return default
    return bool(TOPIC_CONFIG.parse_value(UNCLEAN_LEADER_ELECTION_ENABLE, value))


def touches_unclean_election(records: tuple[ConfigRecord, ...]) -> bool:
    """Whether these records may enable unclean election somewhere (re-run elections then)."""
    return any(r.name == UNCLEAN_LEADER_ELECTION_ENABLE for r in records)
