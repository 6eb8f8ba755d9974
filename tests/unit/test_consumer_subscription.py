"""SubscriptionState: assignment, seeks, lazy resets, auto.offset.reset, pause."""

from __future__ import annotations

import pytest

from clients.consumer.subscription import (
    FetchState,
    NoOffsetForPartitionError,
    ResetStrategy,
    SubscriptionState,
)
from clients.types import TopicPartition
from proto.errors import OffsetOutOfRangeError

T0 = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)


def test_new_assignment_has_no_position_until_default_reset() -> None:
    subs = SubscriptionState(ResetStrategy.EARLIEST)
    subs.assign([T0])
    assert subs.position(T0) is None
    subs.request_default_resets()
    assert subs.awaiting_reset() == [(T0, ResetStrategy.EARLIEST)]
    subs.on_reset(T0, ResetStrategy.EARLIEST, 7)
    assert subs.position(T0) == 7 and subs.fetchable() == [T0]


def test_reset_none_raises_no_offset_for_partition() -> None:
    subs = SubscriptionState(ResetStrategy.NONE)
    subs.assign([T1, T0])
    with pytest.raises(NoOffsetForPartitionError) as info:
        subs.request_default_resets()
    assert info.value.partitions == (T0, T1)
    assert isinstance(info.value, OffsetOutOfRangeError)


def test_seek_overrides_pending_reset_and_stale_reset_answer_is_ignored() -> None:
    subs = SubscriptionState(ResetStrategy.LATEST)
    subs.assign([T0])
    subs.request_reset([T0], ResetStrategy.EARLIEST)
    subs.seek(T0, 42)
    subs.on_reset(T0, ResetStrategy.EARLIEST, 0)
    assert subs.position(T0) == 42


def test_negative_seek_and_unassigned_partition_are_errors() -> None:
    subs = SubscriptionState(ResetStrategy.LATEST)
    subs.assign([T0])
    with pytest.raises(ValueError):
        subs.seek(T0, -1)
    with pytest.raises(ValueError):
        subs.seek(T1, 0)


def test_reassign_keeps_state_of_kept_partitions() -> None:
    subs = SubscriptionState(ResetStrategy.LATEST)
    subs.assign([T0])
    subs.seek(T0, 5)
    subs.assign([T0, T1])
    assert subs.position(T0) == 5
    assert subs.state(T1).fetch_state is FetchState.INITIALIZING


def test_paused_partition_keeps_position_but_is_not_fetchable() -> None:
    subs = SubscriptionState(ResetStrategy.LATEST)
    subs.assign([T0, T1])
    subs.seek(T0, 1)
    subs.seek(T1, 2)
    subs.pause([T0])
    assert subs.fetchable() == [T1] and subs.paused() == {T0}
    subs.resume([T0])
    assert subs.fetchable() == [T0, T1] and subs.position(T0) == 1


def test_out_of_range_resets_per_policy_and_ignores_stale_offsets() -> None:
    subs = SubscriptionState(ResetStrategy.EARLIEST)
    subs.assign([T0])
    subs.seek(T0, 100)
    subs.reset_on_out_of_range(T0, 50)  # a fetch from before the seek: ignored
    assert subs.position(T0) == 100
    subs.reset_on_out_of_range(T0, 100)
    assert subs.awaiting_reset() == [(T0, ResetStrategy.EARLIEST)]


def test_out_of_range_with_policy_none_raises() -> None:
    subs = SubscriptionState(ResetStrategy.NONE)
    subs.assign([T0])
    subs.seek(T0, 100)
    with pytest.raises(OffsetOutOfRangeError):
        subs.reset_on_out_of_range(T0, 100)
