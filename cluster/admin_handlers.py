"""`AdminHandlers`: the broker's Metadata, admin and InitProducerId RPC bodies.

Theory of operation
-------------------
Not a servicer: `BrokerServicer` (cluster/broker_servicer.py) delegates these methods here with
the same `(request, context)` signature. The module imports neither grpc nor asyncio: the
waiting is done by `BrokerMetadata` (sync / wait_for) and the calls by `ControllerChannel`.

- Metadata answers from this broker's committed image: unfenced brokers (addresses from
  `advertised` if given, else their registrations), the known active controller, and per topic
  its partitions (leader or -1, leader_epoch, replicas, isr, offline_replicas = replicas whose
  broker is fenced or unregistered). Per-topic errors: INVALID_TOPIC_EXCEPTION (bad name),
  UNKNOWN_TOPIC_OR_PARTITION / UNKNOWN_TOPIC_ID; with allow_auto_topic_creation and
  auto.create.topics.enable a missing topic is created through the controller (num.partitions,
  default.replication.factor) and answered LEADER_NOT_AVAILABLE, as Kafka does, until a later
  request sees it. Per partition: LEADER_NOT_AVAILABLE without a leader, REPLICA_NOT_AVAILABLE
  when a replica is offline (the entry is still filled in; broker.proto).
- CreateTopics, DeleteTopics, CreatePartitions, IncrementalAlterConfigs, ElectLeaders are
  forwarded unchanged to the active controller. After a successful answer the handler waits
  (bounded) on `BrokerMetadata.sync`, a read barrier, so a following Metadata or DescribeConfigs
  on this broker sees the change. No controller → REQUEST_TIMED_OUT.
- DescribeQuorum is forwarded too (only the active controller knows the voters' progress),
  keeping the leader_id the controller reports: here it is the answer, not a redirect hint.
- DescribeConfigs: topic configs = set on the topic (TOPIC_CONFIG source), else the cluster's
  dynamic default of the broker synonym, else the broker's static value of the synonym if it
  differs from its default, else TOPIC_CONFIG's default (DEFAULT_CONFIG). Broker configs ("" or
  this broker's id) = dynamic per-broker, dynamic cluster default, static, default.
- InitProducerId (idempotent producers only; transactions are out of scope and answered
  UNSUPPORTED_VERSION): a new id from `BrokerMetadata.allocate_producer_id` with epoch 0, or,
  when the request carries the producer's id and epoch (KIP-360 bump), the same id with epoch
  + 1 (a new id once the epoch would overflow int16).
- Errors: each method has its one try at the edge (`_edge`): RafkaError → its code, anything else
  UNKNOWN_SERVER_ERROR logged with its traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from cluster.controller_channel_transport import ControllerChannel
from cluster.metadata_runtime import BrokerLog, BrokerMetadata
from proto import admin_pb2, broker_pb2, common_pb2, controller_pb2
from proto.broker_config import BROKER_CONFIG, TOPIC_CONFIG_SYNONYMS, BrokerConfig
from proto.config import ConfigDef, ConfigType
from proto.errors import (
    ErrorCode,
    InvalidRequestError,
    NotControllerError,
    RafkaError,
    RequestTimedOutError,
    UnknownTopicOrPartitionError,
)
from proto.metadata import NO_LEADER, ConfigResourceType
from proto.metadata_image import MetadataImage, TopicImage
from proto.topic_config import TOPIC_CONFIG
from proto.topic_names import is_internal, validate_topic_name

log = logging.getLogger(__name__)

Resp = TypeVar("Resp")

MAX_EPOCH = 32767  # producer epochs are int16 in Kafka
DEFAULT_SYNC_TIMEOUT_S = 5.0

_CONFIG_TYPES = {
    ConfigType.BOOLEAN: common_pb2.CONFIG_TYPE_BOOLEAN,
    ConfigType.STRING: common_pb2.CONFIG_TYPE_STRING,
    ConfigType.INT: common_pb2.CONFIG_TYPE_INT,
    ConfigType.LONG: common_pb2.CONFIG_TYPE_LONG,
    ConfigType.DOUBLE: common_pb2.CONFIG_TYPE_DOUBLE,
    ConfigType.LIST: common_pb2.CONFIG_TYPE_LIST,
}


def _edge(
    response_cls: type[Any],
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """The one try/except of a handler (STYLE §5); responses without a top-level error_code
    (Metadata, DescribeConfigs) re-raise unexpected errors for gRPC to answer UNKNOWN."""

    has_code = "error_code" in response_cls.DESCRIPTOR.fields_by_name

    def wrap(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def handler(self: AdminHandlers, request: Any, context: Any) -> Any:
            try:
                return await method(self, request, context)
            except RafkaError as exc:
                self._log.debug("%s: %s %s", method.__name__, exc.name, exc.message)
                if not has_code:
                    raise
                return response_cls(error_code=exc.code, error_message=exc.message)
            except Exception:
                self._log.exception("%s failed", method.__name__)
                if not has_code:
                    raise
                return response_cls(
                    error_code=ErrorCode.UNKNOWN_SERVER_ERROR, error_message="internal error"
                )

        return handler

    return wrap


def format_value(value: Any) -> str | None:
    """A parsed config value in Kafka's string form."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


class AdminHandlers:
    """Metadata, forwarded admin RPCs, DescribeConfigs and InitProducerId; see module doc."""

    def __init__(
        self,
        *,
        broker_id: int,
        metadata: BrokerMetadata,
        channel: ControllerChannel,
        config: BrokerConfig,
        advertised: Callable[[], dict[int, tuple[str, int]]] | None = None,
    ) -> None:
        self._broker_id = broker_id
        self._metadata = metadata
        self._channel = channel
        self._config = config
        self._advertised = advertised
        self._log = BrokerLog(log, broker_id)

    # ------------------------------------------------------------------ Metadata

    @_edge(broker_pb2.MetadataResponse)
    async def Metadata(
        self, request: broker_pb2.MetadataRequest, context: Any
    ) -> broker_pb2.MetadataResponse:
        image = self._metadata.image
        response = broker_pb2.MetadataResponse(cluster_id=self._metadata.cluster_id)
        controller = self._channel.active_controller_id
        response.controller_id = -1 if controller is None else controller
        self._fill_brokers(image, response)
        if request.all_topics:
            for topic in image.topics():
                response.topics.append(topic_metadata(image, topic))
            return response
        to_create: list[str] = []
        for wanted in request.topics:
            entry = self._requested_topic(image, wanted)
            if (
                entry.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                and request.allow_auto_topic_creation
                and self._config.auto_create_topics_enable
                and not is_internal(entry.name)
                and entry.name not in to_create
            ):
                to_create.append(entry.name)
            response.topics.append(entry)
        if to_create:
            errors = await self._auto_create(to_create)
            for entry in response.topics:
                if entry.name in errors:
                    code, message = errors[entry.name]
                    entry.error_code, entry.error_message = code, message
        return response

    def _fill_brokers(self, image: MetadataImage, response: broker_pb2.MetadataResponse) -> None:
        advertised = self._advertised() if self._advertised is not None else {}
        for broker_id in sorted(image.brokers):
            registration = image.brokers[broker_id]
            if registration.fenced:
                continue
            host, port = advertised.get(
                broker_id, (registration.endpoint.host, registration.endpoint.port)
            )
            node = common_pb2.Node(node_id=broker_id, host=host, port=port)
            if registration.rack is not None:
                node.rack = registration.rack
            response.brokers.append(node)

    def _requested_topic(
        self, image: MetadataImage, wanted: broker_pb2.MetadataRequest.MetadataRequestTopic
    ) -> broker_pb2.MetadataResponse.MetadataResponseTopic:
        Entry = broker_pb2.MetadataResponse.MetadataResponseTopic
        topic: TopicImage | None = None
        if wanted.topic_id:
            topic = image.topic_by_id(wanted.topic_id)
            if topic is None or (wanted.name and topic.name != wanted.name):
                return Entry(
                    name=wanted.name, topic_id=wanted.topic_id,
                    error_code=ErrorCode.UNKNOWN_TOPIC_ID,
                    error_message=f"Topic id {wanted.topic_id} does not exist"
                    + (f" as {wanted.name}" if wanted.name else ""),
                )
            return topic_metadata(image, topic)
        try:
            validate_topic_name(wanted.name)
        except RafkaError as exc:
            return Entry(name=wanted.name, error_code=exc.code, error_message=exc.message)
        topic = image.topic(wanted.name)
        if topic is None:
            return Entry(
                name=wanted.name, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                error_message=f"Topic {wanted.name} does not exist",
            )
        return topic_metadata(image, topic)

    async def _auto_create(self, names: list[str]) -> dict[str, tuple[int, str]]:
        """Create missing topics; each name → the (code, message) to answer with."""
        request = admin_pb2.CreateTopicsRequest(
            timeout_ms=self._config.request_timeout_ms,
            topics=[
                admin_pb2.CreateTopicsRequest.CreatableTopic(
                    name=name,
                    num_partitions=self._config.num_partitions,
                    replication_factor=self._config.default_replication_factor,
                )
                for name in names
            ],
        )
        pending = (ErrorCode.LEADER_NOT_AVAILABLE, "topic is being created")
        try:
            response = await self._forward("CreateTopics", request, request.timeout_ms)
        except RafkaError as exc:
            self._log.warning("auto-create of %s failed: %s", names, exc.message)
            return {name: (exc.code, exc.message) for name in names}
        if response.error_code != ErrorCode.NONE:
            return {name: (response.error_code, response.error_message) for name in names}
        result: dict[str, tuple[int, str]] = {}
        for topic in response.topics:
            if topic.error_code in (ErrorCode.NONE, ErrorCode.TOPIC_ALREADY_EXISTS):
                result[topic.name] = pending
            else:
                result[topic.name] = (topic.error_code, topic.error_message)
        created = [t.name for t in response.topics if t.error_code == ErrorCode.NONE]
        if created:
            self._log.info("auto-created topics %s", created)
        return result

    # ------------------------------------------------------------------ forwarded admin

    @_edge(admin_pb2.CreateTopicsResponse)
    async def CreateTopics(
        self, request: admin_pb2.CreateTopicsRequest, context: Any
    ) -> admin_pb2.CreateTopicsResponse:
        response: admin_pb2.CreateTopicsResponse = await self._forward_and_sync(
            "CreateTopics", request, request.timeout_ms, not request.validate_only)
        return response

    @_edge(admin_pb2.DeleteTopicsResponse)
    async def DeleteTopics(
        self, request: admin_pb2.DeleteTopicsRequest, context: Any
    ) -> admin_pb2.DeleteTopicsResponse:
        response: admin_pb2.DeleteTopicsResponse = await self._forward_and_sync(
            "DeleteTopics", request, request.timeout_ms, True)
        return response

    @_edge(admin_pb2.CreatePartitionsResponse)
    async def CreatePartitions(
        self, request: admin_pb2.CreatePartitionsRequest, context: Any
    ) -> admin_pb2.CreatePartitionsResponse:
        response: admin_pb2.CreatePartitionsResponse = await self._forward_and_sync(
            "CreatePartitions", request, request.timeout_ms, not request.validate_only)
        return response

    @_edge(admin_pb2.IncrementalAlterConfigsResponse)
    async def IncrementalAlterConfigs(
        self, request: admin_pb2.IncrementalAlterConfigsRequest, context: Any
    ) -> admin_pb2.IncrementalAlterConfigsResponse:
        response: admin_pb2.IncrementalAlterConfigsResponse = await self._forward_and_sync(
            "IncrementalAlterConfigs", request, 0, not request.validate_only)
        return response

    @_edge(admin_pb2.ElectLeadersResponse)
    async def ElectLeaders(
        self, request: admin_pb2.ElectLeadersRequest, context: Any
    ) -> admin_pb2.ElectLeadersResponse:
        response: admin_pb2.ElectLeadersResponse = await self._forward_and_sync(
            "ElectLeaders", request, request.timeout_ms, True)
        return response

    @_edge(controller_pb2.DescribeQuorumResponse)
    async def DescribeQuorum(
        self, request: controller_pb2.DescribeQuorumRequest, context: Any
    ) -> controller_pb2.DescribeQuorumResponse:
        # Unlike the other forwards, the header's leader_id stays: here it is the answer (the
        # quorum leader), not a redirect hint for the client.
        timeout_s = self._config.request_timeout_ms / 1000
        try:
            response = await self._channel.call("DescribeQuorum", request, timeout_s=timeout_s)
        except NotControllerError as exc:
            raise RequestTimedOutError(exc.message) from None
        return response  # type: ignore[no-any-return]

    async def _forward(self, rpc: str, request: Any, timeout_ms: int) -> Any:
        """The controller's response to `request` (header leader fields cleared).

        Raises:
            RequestTimedOutError: no active controller answered in time.
        """
        timeout_s = (timeout_ms if timeout_ms > 0 else self._config.request_timeout_ms) / 1000
        try:
            response = await self._channel.call(rpc, request, timeout_s=timeout_s)
        except NotControllerError as exc:
            raise RequestTimedOutError(exc.message) from None
        response.ClearField("leader_id")
        response.leader_address = ""
        return response

    async def _forward_and_sync(self, rpc: str, request: Any, timeout_ms: int,
                                changes: bool) -> Any:
        response = await self._forward(rpc, request, timeout_ms)
        if changes and response.error_code == ErrorCode.NONE:
            bound_s = min(DEFAULT_SYNC_TIMEOUT_S, self._config.request_timeout_ms / 1000)
            if not await self._metadata.sync(bound_s):
                self._log.warning("%s committed but metadata not caught up within %.1fs",
                                  rpc, bound_s)
        return response

    # ------------------------------------------------------------------ DescribeConfigs

    @_edge(broker_pb2.DescribeConfigsResponse)
    async def DescribeConfigs(
        self, request: broker_pb2.DescribeConfigsRequest, context: Any
    ) -> broker_pb2.DescribeConfigsResponse:
        response = broker_pb2.DescribeConfigsResponse()
        image = self._metadata.image
        for resource in request.resources:
            result = broker_pb2.DescribeConfigsResponse.DescribeConfigsResult(
                resource_type=resource.resource_type, resource_name=resource.resource_name
            )
            try:
                configs = self._describe(image, resource, request.include_documentation)
            except RafkaError as exc:
                result.error_code, result.error_message = exc.code, exc.message
            else:
                result.configs.extend(configs)
            response.results.append(result)
        return response

    def _describe(
        self,
        image: MetadataImage,
        resource: broker_pb2.DescribeConfigsRequest.DescribeConfigsResource,
        documentation: bool,
    ) -> list[common_pb2.DescribedConfig]:
        kind, name = resource.resource_type, resource.resource_name
        if kind == common_pb2.CONFIG_RESOURCE_TYPE_TOPIC:
            if image.topic(name) is None:
                raise UnknownTopicOrPartitionError(f"Topic {name} does not exist")
            values = self.topic_config_values(image, name)
            table: ConfigDef = TOPIC_CONFIG
        elif kind == common_pb2.CONFIG_RESOURCE_TYPE_BROKER:
            if name not in ("", str(self._broker_id)):
                raise InvalidRequestError(
                    f"Broker {self._broker_id} describes its own configs only, not {name!r}"
                )
            values = self.broker_config_values(image, name)
            table = BROKER_CONFIG
        else:
            raise InvalidRequestError(f"Unsupported config resource type {kind}")
        wanted = set(resource.configuration_keys)
        described: list[common_pb2.DescribedConfig] = []
        for config_name, (value, source) in values.items():
            if wanted and config_name not in wanted:
                continue
            key = table.key(config_name)
            entry = common_pb2.DescribedConfig(
                name=config_name, config_source=source, read_only=False,
                config_type=_CONFIG_TYPES.get(key.type, common_pb2.CONFIG_TYPE_UNKNOWN),
            )
            if value is not None:
                entry.value = value
            if documentation and key.doc:
                entry.documentation = key.doc
            described.append(entry)
        return described

    def topic_config_values(
        self, image: MetadataImage, topic: str
    ) -> dict[str, tuple[str | None, Any]]:
        """Every topic config of `topic`: name → (value, ConfigSource), sorted by name."""
        own = image.configs_for(ConfigResourceType.TOPIC, topic)
        cluster = image.configs_for(ConfigResourceType.BROKER, "")
        result: dict[str, tuple[str | None, Any]] = {}
        for name in TOPIC_CONFIG.names:
            synonym = TOPIC_CONFIG_SYNONYMS.get(name)
            if name in own:
                result[name] = (own[name], common_pb2.CONFIG_SOURCE_TOPIC_CONFIG)
            elif synonym is not None and synonym in cluster:
                result[name] = (cluster[synonym],
                                common_pb2.CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG)
            elif synonym is not None and self._config.get(synonym) != \
                    BROKER_CONFIG.key(synonym).default:
                result[name] = (format_value(self._config.get(synonym)),
                                common_pb2.CONFIG_SOURCE_STATIC_BROKER_CONFIG)
            else:
                result[name] = (format_value(TOPIC_CONFIG.key(name).default),
                                common_pb2.CONFIG_SOURCE_DEFAULT_CONFIG)
        return result

    def broker_config_values(
        self, image: MetadataImage, name: str
    ) -> dict[str, tuple[str | None, Any]]:
        """Every broker config: name → (value, ConfigSource), sorted by name."""
        own: Mapping[str, str] = (
            image.configs_for(ConfigResourceType.BROKER, name) if name else {}
        )
        cluster = image.configs_for(ConfigResourceType.BROKER, "")
        result: dict[str, tuple[str | None, Any]] = {}
        for key in BROKER_CONFIG.names:
            static = self._config.get(key)
            if key in own:
                result[key] = (own[key], common_pb2.CONFIG_SOURCE_DYNAMIC_BROKER_CONFIG)
            elif key in cluster:
                result[key] = (cluster[key],
                               common_pb2.CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG)
            elif static != BROKER_CONFIG.key(key).default:
                result[key] = (format_value(static), common_pb2.CONFIG_SOURCE_STATIC_BROKER_CONFIG)
            else:
                result[key] = (format_value(static), common_pb2.CONFIG_SOURCE_DEFAULT_CONFIG)
        return result

    # ------------------------------------------------------------------ InitProducerId

    @_edge(broker_pb2.InitProducerIdResponse)
    async def InitProducerId(
        self, request: broker_pb2.InitProducerIdRequest, context: Any
    ) -> broker_pb2.InitProducerIdResponse:
        if request.HasField("transactional_id") and request.transactional_id:
            raise RafkaError.for_code(
                ErrorCode.UNSUPPORTED_VERSION,
                f"transactions are not supported (transactional.id "
                f"{request.transactional_id!r}); use an idempotent producer",
            )
        has_id = request.HasField("producer_id") and request.producer_id >= 0
        has_epoch = request.HasField("producer_epoch") and request.producer_epoch >= 0
        if has_id != has_epoch:
            raise InvalidRequestError(
                "producer_id and producer_epoch must be given together (epoch bump) or not at all"
            )
        if has_id and request.producer_epoch + 1 < MAX_EPOCH:
            self._log.debug("producer %d bumps epoch to %d", request.producer_id,
                            request.producer_epoch + 1)
            return broker_pb2.InitProducerIdResponse(
                producer_id=request.producer_id, producer_epoch=request.producer_epoch + 1
            )
        producer_id = await self._metadata.allocate_producer_id()
        return broker_pb2.InitProducerIdResponse(producer_id=producer_id, producer_epoch=0)


def topic_metadata(
    image: MetadataImage, topic: TopicImage
) -> broker_pb2.MetadataResponse.MetadataResponseTopic:
    """One topic's Metadata entry from the image (pure)."""
    Partition = broker_pb2.MetadataResponse.MetadataResponsePartition
    entry = broker_pb2.MetadataResponse.MetadataResponseTopic(
        name=topic.name, topic_id=topic.topic_id, is_internal=is_internal(topic.name)
    )
    for partition_id in sorted(topic.partitions):
        registration = topic.partitions[partition_id]
        offline = [
            r for r in registration.replicas
            if (b := image.brokers.get(r)) is None or b.fenced
        ]
        item = Partition(
            partition_index=partition_id,
            leader_id=registration.leader,
            leader_epoch=registration.leader_epoch,
            replicas=registration.replicas,
            isr=registration.isr,
            offline_replicas=offline,
        )
        if registration.leader == NO_LEADER:
            item.error_code = ErrorCode.LEADER_NOT_AVAILABLE
            item.error_message = f"{topic.name}-{partition_id} has no leader"
        elif offline:
            item.error_code = ErrorCode.REPLICA_NOT_AVAILABLE
            item.error_message = f"replicas {offline} of {topic.name}-{partition_id} are offline"
        entry.partitions.append(item)
    return entry
