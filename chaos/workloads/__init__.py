"""Chaos workloads: what a run does to the cluster while faults strike, all recorded in the
history (chaos/history.py) on one clock.

- `VerifiableProducer` (producer.py): unique values, every send's invoke and outcome.
- `VerifiableConsumerGroup` (consumer.py): ConsumerActors recording polls, commits and
  assignments with their generation; the fault injector's `ConsumerGroupHandle`.
- `MetadataObserver` (observer.py): the leader / epoch / ISR timeline.
- `read_converged` (final_reads.py): every partition from every replica, after healing.
"""

from chaos.workloads.clock import RunClock
from chaos.workloads.consumer import ConsumerRecorder, VerifiableConsumerGroup, merge_by_time
from chaos.workloads.final_reads import FinalReads, read_converged, read_replicas
from chaos.workloads.observer import MetadataObserver
from chaos.workloads.producer import ProducerSpec, VerifiableProducer

__all__ = [
    "ConsumerRecorder", "FinalReads", "MetadataObserver", "ProducerSpec", "RunClock",
    "VerifiableConsumerGroup", "VerifiableProducer", "merge_by_time", "read_converged",
    "read_replicas",
]
