"""`RayNodes`: a multi-node Ray test cluster whose Rafka actors are pinned to nodes (node loss).

`ray.cluster_utils.Cluster` runs several raylets on this machine, each a Ray "node" with its
own worker processes. Every node k carries a custom resource `rafka-node-<k>`; the
`LocalCluster` gets `actor_options=nodes.actor_options`, which asks each actor for a sliver of
its node's resource, so placement is fixed: controllers on the head (node 0), broker i on
worker node ((i - 1) mod workers) + 1. Removing a node kills its raylet and with it every
actor process on it (a lost machine); `add_back(k)` starts a fresh raylet with the same
resource, where the launcher's restart puts the same actors again (same ids, data dirs and
ports: the data dirs are shared, as a re-attached disk would be).

The driver joins the head (`start()` calls `ray.init(address=...)`), so it cannot share a
process with another Ray session: tests run it in a subprocess.
"""

from __future__ import annotations

import logging
from typing import Any

import ray

from cluster.launcher import RAY_SYSTEM_CONFIG

log = logging.getLogger(__name__)

RESOURCE = "rafka-node-{}"
HEAD = 0
_CAPACITY = 1000.0  # each actor asks for 1: a node holds any number of them


class RayNodes:
    """A head plus `workers` worker nodes; see the module docstring.

    Args:
        workers: worker nodes for the brokers (>= 1).
        namespace: the Ray namespace the driver joins (the cluster's `rafka-<name>`).
    """

    def __init__(self, workers: int = 3, *, namespace: str = "rafka-nodes") -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        self.workers = workers
        self.namespace = namespace
        self._cluster: Any = None
        self._nodes: dict[int, Any] = {}  # k → the node handle of ray.cluster_utils

    def start(self) -> RayNodes:
        from ray.cluster_utils import Cluster  # noqa: PLC0415 - test utility, only here

        assert not ray.is_initialized(), "RayNodes starts its own Ray: none may run here"
        self._cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 2, "resources": {RESOURCE.format(HEAD): _CAPACITY},
            "include_dashboard": False, "_system_config": RAY_SYSTEM_CONFIG})
        for k in range(1, self.workers + 1):
            self._nodes[k] = self._add(k)
        self._nodes[HEAD] = self._cluster.head_node
        ray.init(address=self._cluster.address, namespace=self.namespace,
                 logging_level=logging.WARNING, log_to_driver=False)
        self._cluster.wait_for_nodes()
        return self

    def _add(self, k: int) -> Any:
        assert self._cluster is not None
        return self._cluster.add_node(num_cpus=1, resources={RESOURCE.format(k): _CAPACITY})

    def shutdown(self) -> None:
        """Disconnect the driver and stop every node."""
        if ray.is_initialized():
            ray.shutdown()
        if self._cluster is not None:
            self._cluster.shutdown()
            self._cluster = None

    def __enter__(self) -> RayNodes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ---- placement ------------------------------------------------------------------------

    def node_of(self, actor_name: str) -> int:
        """The node an actor is pinned to (`broker-3` → a worker, `controller-1` → the head)."""
        role, _, num = actor_name.rpartition("-")
        if role == "broker" and num.isdigit():
            return (int(num) - 1) % self.workers + 1
        return HEAD

    def actor_options(self, actor_name: str) -> dict[str, Any]:
        """Extra Ray options for `LocalCluster(actor_options=...)`: pin the actor."""
        return {"resources": {RESOURCE.format(self.node_of(actor_name)): 1.0}}

    @staticmethod
    def parse_node(spec: str) -> int:
        """`node:K` → K.

        Raises:
            ValueError: not `node:` and a number.
        """
        role, _, arg = spec.strip().partition(":")
        if role != "node" or not arg.strip().isdigit():
            raise ValueError(f"bad node {spec!r}: expected node:K")
        return int(arg)

    # ---- faults ---------------------------------------------------------------------------

    def remove(self, k: int) -> None:
        """Kill node k's raylet and every process on it (no graceful drain)."""
        if k == HEAD:
            raise ValueError("the head node holds the GCS and the driver; lose a worker node")
        node = self._nodes.pop(k, None)
        if node is None:
            raise LookupError(f"node {k} is not up")
        assert self._cluster is not None
        self._cluster.remove_node(node, allow_graceful=False)
        log.info("node %d removed", k)

    def add_back(self, k: int) -> None:
        """A fresh node k (same resource), where restarted actors are placed again."""
        if k in self._nodes:
            return
        self._nodes[k] = self._add(k)
        assert self._cluster is not None
        self._cluster.wait_for_nodes()
        log.info("node %d added back", k)

    @property
    def live_nodes(self) -> list[int]:
        return sorted(self._nodes)
