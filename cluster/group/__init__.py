"""The group coordinator's cores (KAFKA_SEMANTICS §6): no asyncio, grpc, clock or I/O.

- `hashing`: which `__consumer_offsets` partition coordinates a group.
- `records`: Kafka's key/value schemas of the `__consumer_offsets` records.
- `messages`: the requests and responses the coordinator core speaks.
- `state`: one classic group's state machine (members, generations, timers).
- `coordinator`: every group of the partitions this broker leads; loading, appends, offsets.
The asyncio shell is `cluster/group_runtime.py`.
"""
