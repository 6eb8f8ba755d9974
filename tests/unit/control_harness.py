"""A test driver for ControlManager: a fake shell that "commits" every result at once.

`Shell` plays the controller shell's part of the contract in controller/control.py: every result
with records becomes one entry at the manager's next offset, and the committed image is rebuilt
only from those entries, so tests can check that replay equals the speculative image.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from controller.control import ControlManager, ControllerConfig, ControllerResult
from controller.requests import (
    AlterPartitionData,
    AlterPartitionRequest,
    AlterPartitionResponse,
    BrokerHeartbeatRequest,
    BrokerHeartbeatResponse,
    BrokerRegistrationRequest,
    BrokerRegistrationResponse,
    CreatableTopic,
    CreatableTopicResult,
    CreateTopicsRequest,
)
from proto.errors import ErrorCode
from proto.metadata import Endpoint, MetadataRecord
from proto.metadata_image import MetadataImage, PartitionRegistration

R = TypeVar("R")


class Shell:
    """Drives one ControlManager; keeps the log of entries and the committed image."""

    def __init__(self, config: ControllerConfig | None = None, *, seed: int = 0) -> None:
        self.config = config or ControllerConfig()
        self.manager = ControlManager(self.config, rng=random.Random(seed))
        self.committed = MetadataImage()
        self.entries: list[tuple[int, tuple[MetadataRecord, ...]]] = []
        self.incarnations: dict[int, str] = {}
        self.epochs: dict[int, int] = {}
        self.manager.activate(self.committed, 0, next_offset=1)

    # ------------------------------------------------------------------ plumbing

    def commit(self, result: ControllerResult[R]) -> R:
        """Propose and commit a result as the shell would (one entry per result)."""
        if result.records:
            offset = self.manager.last_written_offset
            assert not self.entries or offset > self.entries[-1][0]
            self.entries.append((offset, result.records))
            self.committed.apply_batch(result.records, offset)
            self.manager.on_commit(offset)
        return result.response

    def failover(self, now_ms: int) -> None:
        """A new active controller from the committed image (a fresh manager, same config)."""
        old_rng = random.Random(len(self.entries))
        self.manager = ControlManager(self.config, rng=old_rng)
        next_offset = (self.entries[-1][0] if self.entries else 0) + 2  # + the leader's no-op
        self.manager.activate(self.committed, now_ms, next_offset=next_offset)

    def replayed(self) -> MetadataImage:
        image = MetadataImage()
        for offset, records in self.entries:
            image.apply_batch(records, offset)
        return image

    # ------------------------------------------------------------------ brokers

    def register(
        self, broker_id: int, now_ms: int, *, incarnation: str | None = None
    ) -> BrokerRegistrationResponse:
        incarnation = incarnation or f"inc-{broker_id}-{len(self.entries)}"
        response = self.commit(self.manager.handle_broker_registration(
            BrokerRegistrationRequest(
                broker_id, incarnation, Endpoint("127.0.0.1", 9000 + broker_id)
            ),
            now_ms,
        ))
        if response.error_code is ErrorCode.NONE:
            self.incarnations[broker_id] = incarnation
            self.epochs[broker_id] = response.broker_epoch
        return response

    def heartbeat(
        self,
        broker_id: int,
        now_ms: int,
        *,
        offset: int | None = None,
        want_fence: bool = False,
        want_shutdown: bool = False,
        epoch: int | None = None,
    ) -> BrokerHeartbeatResponse:
        """A heartbeat; by default the broker has applied everything committed."""
        return self.commit(self.manager.handle_broker_heartbeat(
            BrokerHeartbeatRequest(
                broker_id,
                self.epochs.get(broker_id, -1) if epoch is None else epoch,
                self.committed.last_applied_offset if offset is None else offset,
                want_fence=want_fence,
                want_shutdown=want_shutdown,
            ),
            now_ms,
        ))

    def start_brokers(self, broker_ids: Sequence[int], now_ms: int = 0) -> None:
        """Register and unfence each broker."""
        for broker_id in broker_ids:
            assert self.register(broker_id, now_ms).error_code is ErrorCode.NONE
        for broker_id in broker_ids:
            response = self.heartbeat(broker_id, now_ms)
            assert not response.is_fenced, response

    def heartbeat_all(self, now_ms: int, *, except_ids: Sequence[int] = ()) -> None:
        for broker_id in sorted(self.epochs):
            if broker_id not in except_ids:
                self.heartbeat(broker_id, now_ms)

    # ------------------------------------------------------------------ topics

    def create_topic(
        self,
        name: str,
        now_ms: int = 0,
        *,
        partitions: int = -1,
        replication_factor: int = -1,
        assignments: tuple[tuple[int, ...], ...] | None = None,
        configs: dict[str, str | None] | None = None,
    ) -> CreatableTopicResult:
        response = self.commit(self.manager.handle_create_topics(
            CreateTopicsRequest((CreatableTopic(
                name, partitions, replication_factor, assignments, configs or {}
            ),)),
            now_ms,
        ))
        (result,) = response.topics
        return result

    def partition(self, topic: str, partition_id: int) -> PartitionRegistration:
        image = self.manager.image
        topic_image = image.topic(topic)
        assert topic_image is not None, topic
        return topic_image.partitions[partition_id]

    def alter_isr(
        self, topic: str, partition_id: int, new_isr: tuple[int, ...], now_ms: int = 0
    ) -> AlterPartitionResponse:
        """The leader asks for `new_isr` based on the current state."""
        state = self.partition(topic, partition_id)
        topic_image = self.manager.image.topic(topic)
        assert topic_image is not None
        return self.commit(self.manager.handle_alter_partition(
            AlterPartitionRequest(state.leader, self.epochs[state.leader], (AlterPartitionData(
                topic_image.topic_id, partition_id, state.leader_epoch, new_isr,
                state.partition_epoch,
            ),)),
            now_ms,
        ))
