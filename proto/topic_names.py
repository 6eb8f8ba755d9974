"""Topic name rules (Kafka's `org.apache.kafka.common.internals.Topic`; KAFKA_SEMANTICS §9).

A legal name is 1..249 ASCII characters from `[a-zA-Z0-9._-]` and is neither "." nor "..".
Because metric names turn '.' into '_', a new topic may not equal an existing one once both are
"unified" that way (`a.b` vs `a_b`): the KRaft controller rejects it with "collides with existing
topic" (`ReplicationControlManager.validateNewTopicNames`). Internal topics are the compacted
topics the brokers own; `__cluster_metadata` is the controllers' Raft log and can't be created.

Pure functions; violations raise `InvalidTopicError` (INVALID_TOPIC_EXCEPTION, 17) with Kafka's
messages, except an exact duplicate (`TopicAlreadyExistsError`, 36) and an attempt to create
`__cluster_metadata` (`InvalidRequestError`, as Kafka's ControllerApis does).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from proto.errors import ErrorCode, InvalidRequestError, InvalidTopicError, error_class

MAX_NAME_LENGTH = 249  # Topic.MAX_NAME_LENGTH
LEGAL_CHARS = "[a-zA-Z0-9._-]"  # Topic.LEGAL_CHARS
CONSUMER_OFFSETS_TOPIC = "__consumer_offsets"
TRANSACTION_STATE_TOPIC = "__transaction_state"
SHARE_GROUP_STATE_TOPIC = "__share_group_state"
CLUSTER_METADATA_TOPIC = "__cluster_metadata"
INTERNAL_TOPICS: frozenset[str] = frozenset(
    {CONSUMER_OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC, SHARE_GROUP_STATE_TOPIC}
)

_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")
TopicAlreadyExistsError = error_class(ErrorCode.TOPIC_ALREADY_EXISTS)


def validate_topic_name(name: str) -> None:
    """Check the syntax of a topic name (Kafka's `Topic.validate`).

    Raises:
        InvalidTopicError: empty, "." or "..", longer than 249, or an illegal character.
    """
    if not name:
        raise InvalidTopicError("Topic name is illegal, it can't be empty")
    if name in (".", ".."):
        raise InvalidTopicError('Topic name cannot be "." or ".."')
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidTopicError(
            f"Topic name is illegal, it can't be longer than {MAX_NAME_LENGTH} characters, "
            f"topic name: {name}"
        )
    if not _LEGAL.fullmatch(name):
        raise InvalidTopicError(
            f'Topic name "{name}" is illegal, it contains a character other than '
            "ASCII alphanumerics, '.', '_' and '-'"
        )


def is_internal(name: str) -> bool:
    """True for the broker-owned internal topics (`Topic.isInternal`)."""
    return name in INTERNAL_TOPICS


def has_collision_chars(name: str) -> bool:
    """True if the name contains '.' or '_', the characters metric names unify."""
    return "." in name or "_" in name


def unify_collision_chars(name: str) -> str:
    """The name with every '.' replaced by '_' (`Topic.unifyCollisionChars`)."""
    return name.replace(".", "_")


def check_collision(name: str, existing: Iterable[str]) -> None:
    """Reject a new name equal to, or colliding through '.'/'_' with, an existing topic.

    Raises:
        TopicAlreadyExistsError: `name` itself exists.
        InvalidTopicError: "Topic 'a.b' collides with existing topic: a_b".
    """
    existing_names = sorted(existing)  # sorted: the reported collision is deterministic
    if name in existing_names:
        raise TopicAlreadyExistsError(f"Topic '{name}' already exists.")
    if not has_collision_chars(name):
        return
    unified = unify_collision_chars(name)
    for other in existing_names:
        if unify_collision_chars(other) == unified:
            raise InvalidTopicError(f"Topic '{name}' collides with existing topic: {other}")


def validate_new_topic_name(name: str, existing: Iterable[str]) -> None:
    """Everything CreateTopics checks about a name: syntax, reserved names, collisions.

    Raises:
        InvalidTopicError: bad syntax or a '.'/'_' collision.
        InvalidRequestError: the name is `__cluster_metadata`.
        TopicAlreadyExistsError: the topic exists.
    """
    validate_topic_name(name)
    if name == CLUSTER_METADATA_TOPIC:
        raise InvalidRequestError(
            f"Creation of internal topic {CLUSTER_METADATA_TOPIC} is prohibited."
        )
    check_collision(name, existing)
