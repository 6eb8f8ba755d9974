"""The deterministic simulator: one seeded `random.Random` drives a fake clock, network and disk.

`SimClock` and `SimNetwork` are protocol-agnostic; `raft_cluster.RaftSim` runs N Raft voters on
them with crash/restart, faults and invariant checks after every event.
"""

from chaos.sim.clock import SimClock
from chaos.sim.network import LinkFaults, SimNetwork

__all__ = ["LinkFaults", "SimClock", "SimNetwork"]
