"""`GroupCoordinator`: every group of the `__consumer_offsets` partitions this broker leads.

Theory of operation
-------------------
A group belongs to partition `coordinator_partition(group_id, num_partitions)`; this broker
coordinates it only while it leads that partition and has loaded it. The shell drives:

- Partitions: `begin_load(p, epoch)` when this broker becomes leader, `replay(p, key, value)`
  for every record of the partition's log in order, `complete_load(p, now_ms)`; until then the
  partition's groups answer COORDINATOR_LOAD_IN_PROGRESS. `unload(p)` on losing leadership
  drops its groups and answers their parked requests NOT_COORDINATOR; a group of a partition
  not held answers NOT_COORDINATOR.
- Requests: each mutating call takes a shell-chosen request id and returns an `Outcome`:
  `responses` ready now (possibly for earlier, parked requests) and `appends`, the records to
  append to `__consumer_offsets` with acks=all. An answer that depends on an append (a commit,
  the leader's SyncGroup, a static member's replacement, a deletion) goes out only after the
  shell reports the append's result with `on_append_done(append_id, error, now_ms)`, as Kafka
  does; append errors map to Kafka's codes (`append_error`). The shell issues the appends in
  the order given (they share one partition log, so order is durability order).
- Time: `tick(now_ms)` runs session expiry, join/sync deadlines, the initial rebalance delay
  and, every offsets.retention.check.interval.ms, offset expiry.

Offsets: a commit is validated against the group (generation, member, state), appended, then
applied to the cache. Offsets expire (tombstones) offsets.retention.minutes after the group
became Empty (or after the commit for groups that never had members); an Empty group left with
no offsets is removed (a group tombstone). DeleteGroups writes tombstones for every offset and
the group. Loading applies the same records, so a new coordinator rebuilds groups and offsets.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from enum import Enum

from cluster.group.hashing import coordinator_partition
from cluster.group.messages import (
    DescribedGroup,
    DeleteGroupResult,
    FetchedOffset,
    Heartbeat,
    HeartbeatResult,
    JoinGroup,
    JoinGroupResult,
    LeaveGroup,
    LeaveGroupResult,
    ListedGroup,
    ListGroupsResult,
    OffsetCommit,
    OffsetCommitResult,
    OffsetFetchResult,
    PartitionError,
    SyncGroup,
    SyncGroupResult,
)
from cluster.group.records import (
    GroupMetadataKey,
    GroupMetadataValue,
    MemberMetadata,
    OffsetCommitKey,
    OffsetCommitValue,
    decode_key,
    decode_value,
    encode_group_value,
    encode_key,
    encode_offset_value,
)
from cluster.group.state import (
    Effects,
    Group,
    GroupConfig,
    GroupState,
    Member,
    OffsetAndMetadata,
    StoreGroup,
    StoreKind,
)
from proto.errors import ErrorCode

Record = tuple[bytes, bytes | None]  # (key, value); value None = tombstone


@dataclass(frozen=True, slots=True)
class Append:
    """Records to append to `__consumer_offsets-<partition>` with acks=all."""

    append_id: int
    partition: int
    records: tuple[Record, ...]


@dataclass(slots=True)
class Outcome:
    responses: list[tuple[int, object]] = field(default_factory=list)
    appends: list[Append] = field(default_factory=list)


class _Load(Enum):
    LOADING = "loading"
    LOADED = "loaded"


@dataclass(slots=True)
class _Partition:
    epoch: int
    status: _Load


@dataclass(slots=True)
class _PendingAppend:
    partition: int
    kind: str  # "store" | "commit" | "delete" | "expire"
    request_id: int | None = None
    group_id: str = ""
    store: StoreGroup | None = None
    commit: OffsetCommit | None = None
    results: dict[tuple[str, int], PartitionError] = field(default_factory=dict)
    offsets: dict[tuple[str, int], OffsetAndMetadata] = field(default_factory=dict)


_AS_COORDINATOR_NOT_AVAILABLE = {
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NOT_ENOUGH_REPLICAS,
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND, ErrorCode.REQUEST_TIMED_OUT,
    ErrorCode.LEADER_NOT_AVAILABLE,
}
_AS_NOT_COORDINATOR = {
    ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR,
    ErrorCode.FENCED_LEADER_EPOCH, ErrorCode.UNKNOWN_LEADER_EPOCH,
}
_TOO_LARGE = {ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE,
              ErrorCode.INVALID_FETCH_SIZE}


def append_error(error: ErrorCode, *, commit: bool) -> ErrorCode:
    """Kafka's mapping of a failed `__consumer_offsets` append to the group's answer."""
    if error is ErrorCode.NONE:
        return error
    if error in _AS_COORDINATOR_NOT_AVAILABLE:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if error in _AS_NOT_COORDINATOR:
        return ErrorCode.NOT_COORDINATOR
    if error in _TOO_LARGE:
        return ErrorCode.INVALID_COMMIT_OFFSET_SIZE if commit else ErrorCode.UNKNOWN_SERVER_ERROR
    if error in (ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE):
        return error
    return ErrorCode.UNKNOWN_SERVER_ERROR


class GroupCoordinator:
    """See the module docstring."""

    def __init__(self, config: GroupConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.num_partitions = config.num_partitions
        self._rng = rng or random.Random()
        self._partitions: dict[int, _Partition] = {}
        self.groups: dict[str, Group] = {}
        self._appends: dict[int, _PendingAppend] = {}
        self._next_append = 0
        self._next_expiry_ms: int | None = None
        self.rebalances = 0  # completed join phases of every group so far (a metric counter)

    # -- partitions --

    def set_num_partitions(self, n: int) -> None:
        """The `__consumer_offsets` partition count (from metadata once the topic exists)."""
        if n > 0:
            self.num_partitions = n

    def partition_for(self, group_id: str) -> int:
        return coordinator_partition(group_id, self.num_partitions)

    def partition_epoch(self, partition: int) -> int | None:
        held = self._partitions.get(partition)
        return None if held is None else held.epoch

    def is_loading(self, partition: int) -> bool:
        held = self._partitions.get(partition)
        return held is not None and held.status is _Load.LOADING

    def owned_partitions(self) -> dict[int, int]:
        """Held partitions → leader epoch (loading or loaded)."""
        return {p: h.epoch for p, h in sorted(self._partitions.items())}

    def begin_load(self, partition: int, epoch: int) -> Outcome:
        out = self.unload(partition) if partition in self._partitions else Outcome()
        self._partitions[partition] = _Partition(epoch, _Load.LOADING)
        return out

    def replay(self, partition: int, key: bytes | None, value: bytes | None,
               now_ms: int) -> None:
        """Apply one record of the partition's log (during a load).

        Raises:
            CorruptMessageError: undecodable key or value (the shell logs and skips it).
        """
        if key is None:
            return
        decoded = decode_key(key)
        if decoded is None:
            return
        group = self.groups.get(decoded.group)
        if isinstance(decoded, OffsetCommitKey):
            tp = (decoded.topic, decoded.partition)
            if value is None:
                if group is not None:
                    group.offsets.pop(tp, None)
                return
            v = decode_value(decoded, value)
            assert isinstance(v, OffsetCommitValue)
            if group is None:
                group = self._new_group(decoded.group, partition, now_ms)
            group.offsets[tp] = OffsetAndMetadata(v.offset, v.leader_epoch, v.metadata,
                                                  v.commit_timestamp, v.expire_timestamp)
            return
        if value is None:
            self.groups.pop(decoded.group, None)  # deleted: its offsets were tombstoned first
            return
        g = decode_value(decoded, value)
        assert isinstance(g, GroupMetadataValue)
        if group is None:
            group = self._new_group(decoded.group, partition, now_ms)
        members = [Member(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                          m.rebalance_timeout_ms, m.session_timeout_ms, g.protocol_type,
                          ((g.protocol or "", m.subscription),), m.assignment)
                   for m in g.members]
        group.load_members(g.protocol_type, g.generation, g.protocol, g.leader,
                           g.current_state_timestamp, members, now_ms)

    def complete_load(self, partition: int, now_ms: int) -> Outcome:
        held = self._partitions.get(partition)
        if held is not None:
            held.status = _Load.LOADED
        for group in self.groups.values():
            if group.partition == partition:
                group.start_sessions(now_ms)
        return Outcome()

    def unload(self, partition: int) -> Outcome:
        """Leadership lost: forget the partition's groups; parked requests → NOT_COORDINATOR."""
        out = Outcome()
        fx = Effects()
        self._partitions.pop(partition, None)
        message = f"this broker no longer coordinates __consumer_offsets-{partition}"
        for group_id in [g for g, group in self.groups.items() if group.partition == partition]:
            self.groups.pop(group_id).fail_waiters(ErrorCode.NOT_COORDINATOR, message, fx)
        for append_id, pending in sorted(self._appends.items()):
            if pending.partition == partition:
                del self._appends[append_id]
                self._finish_append(pending, ErrorCode.NOT_COORDINATOR, message, 0, fx)
        out.responses.extend(fx.responses)
        return out

    def _new_group(self, group_id: str, partition: int, now_ms: int) -> Group:
        group = Group(group_id, partition, self.config, now_ms)
        self.groups[group_id] = group
        return group

    def _locate(self, group_id: str) -> tuple[ErrorCode, str] | int:
        """The group's partition, or why this broker cannot answer for it."""
        partition = self.partition_for(group_id)
        held = self._partitions.get(partition)
        if held is None:
            return (ErrorCode.NOT_COORDINATOR,
                    f"this broker does not lead __consumer_offsets-{partition}")
        if held.status is _Load.LOADING:
            return (ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
                    f"loading __consumer_offsets-{partition}")
        return partition

    def _new_member_id(self, prefix: str) -> str:
        return f"{prefix}-{uuid.UUID(int=self._rng.getrandbits(128), version=4)}"

    # -- JoinGroup / SyncGroup / Heartbeat / LeaveGroup --

    def join(self, request_id: int, req: JoinGroup, now_ms: int) -> Outcome:
        out, fx = Outcome(), Effects()
        located = self._locate(req.group_id) if req.group_id else (
            ErrorCode.INVALID_GROUP_ID, "the group id must not be empty")
        if not isinstance(located, int):
            out.responses.append((request_id, JoinGroupResult(*located,
                                                              member_id=req.member_id)))
            return out
        if not (self.config.min_session_timeout_ms <= req.session_timeout_ms
                <= self.config.max_session_timeout_ms):
            out.responses.append((request_id, JoinGroupResult(
                ErrorCode.INVALID_SESSION_TIMEOUT,
                f"session.timeout.ms={req.session_timeout_ms} is outside "
                f"[{self.config.min_session_timeout_ms}, {self.config.max_session_timeout_ms}]",
                member_id=req.member_id)))
            return out
        group = self.groups.get(req.group_id)
        if group is None:
            if req.member_id:
                out.responses.append((request_id, JoinGroupResult(
                    ErrorCode.UNKNOWN_MEMBER_ID, f"group {req.group_id} does not exist",
                    member_id=req.member_id)))
                return out
            group = self._new_group(req.group_id, located, now_ms)
        group.join(request_id, req, now_ms, fx, self._new_member_id)
        return self._finish(group, fx, now_ms, out)

    def sync(self, request_id: int, req: SyncGroup, now_ms: int) -> Outcome:
        out, fx = Outcome(), Effects()
        group, error = self._group_for(req.group_id)
        if group is None:
            out.responses.append((request_id, SyncGroupResult(*error)))
            return out
        group.sync(request_id, req, now_ms, fx)
        return self._finish(group, fx, now_ms, out)

    def abandon(self, request_id: int, now_ms: int) -> None:
        """A parked JoinGroup/SyncGroup's caller went away (see `Group.abandon`)."""
        for group in self.groups.values():
            if group.abandon(request_id, now_ms):
                return

    def heartbeat(self, req: Heartbeat, now_ms: int) -> HeartbeatResult:
        group, error = self._group_for(req.group_id)
        if group is None:
            return HeartbeatResult(*error)
        return group.heartbeat(req, now_ms)

    def leave(self, request_id: int, req: LeaveGroup, now_ms: int) -> Outcome:
        out, fx = Outcome(), Effects()
        located = self._locate(req.group_id)
        if not isinstance(located, int):
            out.responses.append((request_id, LeaveGroupResult(*located)))
            return out
        group = self.groups.get(req.group_id)
        if group is None:
            out.responses.append((request_id, LeaveGroupResult(
                ErrorCode.UNKNOWN_MEMBER_ID, f"group {req.group_id} does not exist")))
            return out
        out.responses.append((request_id, group.leave(req.members, now_ms, fx)))
        return self._finish(group, fx, now_ms, out)

    def _group_for(self, group_id: str) -> tuple[Group | None, tuple[ErrorCode, str]]:
        if not group_id:
            return None, (ErrorCode.INVALID_GROUP_ID, "the group id must not be empty")
        located = self._locate(group_id)
        if not isinstance(located, int):
            return None, located
        group = self.groups.get(group_id)
        if group is None:
            return None, (ErrorCode.UNKNOWN_MEMBER_ID, f"group {group_id} does not exist")
        return group, (ErrorCode.NONE, "")

    def _finish(self, group: Group, fx: Effects, now_ms: int, out: Outcome) -> Outcome:
        """Turn the group's effects into responses and appends (running deadlines now due,
        so a zero initial delay completes the join in the same call)."""
        deadline = group.next_deadline_ms()
        if deadline is not None and deadline <= now_ms and group.group_id in self.groups:
            group.tick(now_ms, fx)
        for store in fx.stores:
            value = encode_group_value(self._group_value(group, store))
            self._append(out, group.partition, ((encode_key(GroupMetadataKey(group.group_id)),
                                                 value),),
                         _PendingAppend(group.partition, "store", group_id=group.group_id,
                                        store=store))
        out.responses.extend(fx.responses)
        self.rebalances += group.rebalances - group.reported_rebalances
        group.reported_rebalances = group.rebalances
        return out

    @staticmethod
    def _group_value(group: Group, store: StoreGroup) -> GroupMetadataValue:
        members = tuple(
            MemberMetadata(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                           m.rebalance_timeout_ms, m.session_timeout_ms,
                           m.metadata(group.protocol_name),
                           store.assignment.get(m.member_id, b""))
            for m in group.members.values()) if store.kind is not StoreKind.EMPTY else ()
        return GroupMetadataValue(group.protocol_type or "", group.generation,
                                  group.protocol_name, group.leader_id,
                                  group.state_timestamp_ms, members)

    def _append(self, out: Outcome, partition: int, records: tuple[Record, ...],
                pending: _PendingAppend) -> None:
        self._next_append += 1
        self._appends[self._next_append] = pending
        out.appends.append(Append(self._next_append, partition, records))

    # -- append results --

    def on_append_done(self, append_id: int, error: ErrorCode, now_ms: int,
                       message: str = "") -> Outcome:
        """The shell's report on an `Append` (NONE once acks=all is satisfied)."""
        out, fx = Outcome(), Effects()
        pending = self._appends.pop(append_id, None)
        if pending is None:
            return out  # the partition was unloaded meanwhile; already answered
        self._finish_append(pending, error, message, now_ms, fx)
        group = self.groups.get(pending.group_id)
        if group is not None:
            return self._finish(group, fx, now_ms, out)
        out.responses.extend(fx.responses)
        return out

    def _finish_append(self, pending: _PendingAppend, error: ErrorCode, message: str,
                       now_ms: int, fx: Effects) -> None:
        group = self.groups.get(pending.group_id)
        if pending.kind == "store":
            store = pending.store
            assert store is not None
            code = append_error(error, commit=False)
            text = message or f"storing group {pending.group_id} failed: {error.name}"
            if group is None:
                if store.kind is StoreKind.STATIC_JOIN:
                    fx.respond(store.request_id, JoinGroupResult(
                        code if code is not ErrorCode.NONE else ErrorCode.NOT_COORDINATOR,
                        text, member_id=store.member_id))
                return
            if store.kind is StoreKind.SYNC:
                group.on_sync_stored(store, code, text, now_ms, fx)
            elif store.kind is StoreKind.STATIC_JOIN:
                group.on_static_join_stored(store, code, text, fx)
            return
        if pending.kind == "commit":
            code = append_error(error, commit=True)
            if code is ErrorCode.NONE and group is not None:
                group.offsets.update(pending.offsets)
            results = dict(pending.results)
            for tp in pending.offsets:
                results[tp] = PartitionError(tp[0], tp[1], code,
                                             "" if code is ErrorCode.NONE else
                                             message or f"commit failed: {error.name}")
            assert pending.commit is not None
            fx.respond(pending.request_id, OffsetCommitResult(tuple(
                results[(p.topic, p.partition)] for p in pending.commit.partitions)))
            return
        if pending.kind == "delete":
            code = append_error(error, commit=False)
            if group is not None and group.state is GroupState.DEAD:
                if code is ErrorCode.NONE:
                    del self.groups[pending.group_id]
                else:
                    group.state = GroupState.EMPTY  # still stored: undo
            fx.respond(pending.request_id, DeleteGroupResult(
                pending.group_id, code,
                "" if code is ErrorCode.NONE else message or f"delete failed: {error.name}"))
        # "expire": tombstones for state already dropped; nobody waits

    # -- offsets --

    def commit(self, request_id: int, req: OffsetCommit, now_ms: int) -> Outcome:
        out = Outcome()

        def everywhere(code: ErrorCode, message: str) -> Outcome:
            out.responses.append((request_id, OffsetCommitResult(tuple(
                PartitionError(p.topic, p.partition, code, message) for p in req.partitions))))
            return out

        if not req.group_id:
            return everywhere(ErrorCode.INVALID_GROUP_ID, "the group id must not be empty")
        located = self._locate(req.group_id)
        if not isinstance(located, int):
            return everywhere(*located)
        group = self.groups.get(req.group_id)
        if group is None:
            if req.generation_id >= 0:
                return everywhere(ErrorCode.ILLEGAL_GENERATION,
                                  f"group {req.group_id} does not exist (generation "
                                  f"{req.generation_id})")
            group = self._new_group(req.group_id, located, now_ms)
        invalid = group.validate_commit(req.member_id, req.group_instance_id,
                                        req.generation_id, now_ms)
        if invalid is not None:
            return everywhere(*invalid)
        pending = _PendingAppend(located, "commit", request_id, req.group_id, commit=req)
        records: list[Record] = []
        for p in req.partitions:
            tp = (p.topic, p.partition)
            metadata = p.metadata or ""
            if len(metadata.encode("utf-8")) > self.config.offset_metadata_max_bytes:
                pending.results[tp] = PartitionError(
                    p.topic, p.partition, ErrorCode.OFFSET_METADATA_TOO_LARGE,
                    f"metadata exceeds offset.metadata.max.bytes="
                    f"{self.config.offset_metadata_max_bytes}")
                continue
            committed = OffsetAndMetadata(p.offset, p.leader_epoch, metadata, now_ms)
            pending.offsets[tp] = committed
            records.append((encode_key(OffsetCommitKey(req.group_id, p.topic, p.partition)),
                            encode_offset_value(OffsetCommitValue(
                                p.offset, p.leader_epoch, metadata, now_ms))))
        if not records:
            out.responses.append((request_id, OffsetCommitResult(tuple(
                pending.results[(p.topic, p.partition)] for p in req.partitions))))
            return out
        self._append(out, located, tuple(records), pending)
        return out

    def fetch_offsets(self, group_id: str, partitions: list[tuple[str, int]] | None
                      ) -> OffsetFetchResult:
        """Committed offsets (None = every committed partition); -1 when none."""
        located = self._locate(group_id)
        if not isinstance(located, int):
            return OffsetFetchResult(group_id, *located)
        group = self.groups.get(group_id)
        offsets = group.offsets if group is not None else {}
        wanted = sorted(offsets) if partitions is None else partitions
        found = []
        for topic, partition in wanted:
            o = offsets.get((topic, partition))
            found.append(FetchedOffset(topic, partition) if o is None else FetchedOffset(
                topic, partition, o.offset, o.leader_epoch, o.metadata))
        return OffsetFetchResult(group_id, ErrorCode.NONE, "", tuple(found))

    # -- admin --

    def list_groups(self, states: set[str] | None = None,
                    types: set[str] | None = None) -> ListGroupsResult:
        wanted_states = {s.lower() for s in states} if states else None
        wanted_types = {t.lower() for t in types} if types else None
        listed = tuple(
            ListedGroup(g.group_id, g.protocol_type or "", g.state.value)
            for g in sorted(self.groups.values(), key=lambda g: g.group_id)
            if not self.is_loading(g.partition) and g.state is not GroupState.DEAD
            and (wanted_states is None or g.state.value.lower() in wanted_states)
            and (wanted_types is None or "classic" in wanted_types))
        if any(h.status is _Load.LOADING for h in self._partitions.values()):
            return ListGroupsResult(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
                                    "some __consumer_offsets partitions are loading", listed)
        return ListGroupsResult(ErrorCode.NONE, "", listed)

    def describe(self, group_id: str) -> DescribedGroup:
        located = self._locate(group_id)
        if not isinstance(located, int):
            return DescribedGroup(group_id, *located)
        group = self.groups.get(group_id)
        if group is None or group.state is GroupState.DEAD:
            return DescribedGroup(group_id, ErrorCode.GROUP_ID_NOT_FOUND,
                                  f"group {group_id} does not exist")
        return group.describe()

    def delete_group(self, request_id: int, group_id: str, now_ms: int) -> Outcome:
        out = Outcome()
        located = self._locate(group_id) if group_id else (
            ErrorCode.INVALID_GROUP_ID, "the group id must not be empty")
        if not isinstance(located, int):
            out.responses.append((request_id, DeleteGroupResult(group_id, *located)))
            return out
        group = self.groups.get(group_id)
        if group is None or group.state is GroupState.DEAD:
            out.responses.append((request_id, DeleteGroupResult(
                group_id, ErrorCode.GROUP_ID_NOT_FOUND, f"group {group_id} does not exist")))
            return out
        if group.state is not GroupState.EMPTY or group.pending_members:
            out.responses.append((request_id, DeleteGroupResult(
                group_id, ErrorCode.NON_EMPTY_GROUP,
                f"group {group_id} is {group.state.value} with members")))
            return out
        group.state = GroupState.DEAD
        self._append(out, located, self._tombstones(group),
                     _PendingAppend(located, "delete", request_id, group_id))
        return out

    @staticmethod
    def _tombstones(group: Group) -> tuple[Record, ...]:
        records: list[Record] = [
            (encode_key(OffsetCommitKey(group.group_id, t, p)), None)
            for t, p in sorted(group.offsets)]
        records.append((encode_key(GroupMetadataKey(group.group_id)), None))
        return tuple(records)

    # -- time --

    def tick(self, now_ms: int) -> Outcome:
        out = Outcome()
        for group in list(self.groups.values()):
            if self.is_loading(group.partition):
                continue
            deadline = group.next_deadline_ms()
            if deadline is None or deadline > now_ms:
                continue
            fx = Effects()
            group.tick(now_ms, fx)
            self._finish(group, fx, now_ms, out)
        if self._next_expiry_ms is None:
            self._next_expiry_ms = now_ms + self.config.offsets_retention_check_interval_ms
        elif now_ms >= self._next_expiry_ms:
            self._next_expiry_ms = now_ms + self.config.offsets_retention_check_interval_ms
            self.expire_offsets(now_ms, out)
        return out

    def next_deadline_ms(self) -> int | None:
        deadlines = [d for g in self.groups.values()
                     if (d := g.next_deadline_ms()) is not None]
        if self._next_expiry_ms is not None:
            deadlines.append(self._next_expiry_ms)
        return min(deadlines, default=None)

    def expire_offsets(self, now_ms: int, out: Outcome | None = None) -> Outcome:
        """Kafka's cleanupGroupMetadata: expired offsets and then-empty groups → tombstones."""
        out = out if out is not None else Outcome()
        retention = self.config.offsets_retention_ms
        for group in sorted(self.groups.values(), key=lambda g: g.group_id):
            if self.is_loading(group.partition) or group.state is GroupState.DEAD:
                continue
            if group.state is GroupState.EMPTY and group.protocol_type is not None:
                expired = [tp for tp, o in group.offsets.items()
                           if (o.expire_timestamp_ms >= 0 and now_ms >= o.expire_timestamp_ms)
                           or now_ms >= group.state_timestamp_ms + retention]
            elif group.state is GroupState.EMPTY or group.protocol_type is None:
                expired = [tp for tp, o in group.offsets.items()
                           if (o.expire_timestamp_ms >= 0 and now_ms >= o.expire_timestamp_ms)
                           or now_ms >= o.commit_timestamp_ms + retention]
            else:
                continue
            records: list[Record] = []
            for topic, partition in sorted(expired):
                del group.offsets[(topic, partition)]
                records.append((encode_key(OffsetCommitKey(group.group_id, topic, partition)),
                                None))
            if group.state is GroupState.EMPTY and not group.offsets \
                    and not group.pending_members:
                del self.groups[group.group_id]
                records.append((encode_key(GroupMetadataKey(group.group_id)), None))
            if records:
                self._append(out, group.partition, tuple(records),
                             _PendingAppend(group.partition, "expire", group_id=group.group_id))
        return out
