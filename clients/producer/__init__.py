"""The producer's protocol cores: the record accumulator and idempotent sequence bookkeeping.

No I/O here (STYLE.md §1): the producer façade and its engine drive these with `now_ms` and
turn their answers into Produce requests, futures and waits.
"""

from clients.producer.accumulator import (
    AccumulatorConfig,
    AppendResult,
    BatchState,
    ProducerBatch,
    ReadyCheck,
    RecordAccumulator,
    SplitPart,
    retry_backoff_ms,
)
from clients.producer.sequences import ProducerIdAndEpoch, SequenceTracker, increment_sequence

__all__ = [
    "AccumulatorConfig",
    "AppendResult",
    "BatchState",
    "ProducerBatch",
    "ProducerIdAndEpoch",
    "ReadyCheck",
    "RecordAccumulator",
    "SequenceTracker",
    "SplitPart",
    "increment_sequence",
    "retry_backoff_ms",
]
