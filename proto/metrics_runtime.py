"""Export `proto.metrics.REGISTRY` through Ray's metrics API, and refresh gauges on a loop.

Theory of operation
-------------------
Hot paths record into the plain registry (a lock and an add). Inside a Ray worker (or a driver
with `ray.init()` done), `start_export()` starts one daemon thread per process that every
`EXPORT_INTERVAL_S` runs the registry's collectors and copies every series into
`ray.util.metrics` objects (created lazily, one per metric): counters as deltas, gauges as their
value, histograms by replaying the raw observations kept since the last export. Ray's metrics
agent then serves them on its Prometheus endpoint (prefixed `ray_`), which the dashboard reads.
Outside Ray, `start_export()` does nothing and the registry keeps working (tests read
`REGISTRY.snapshot()`). `ray` is never imported here unless the process already did.

`PeriodicMetrics` runs a gauge-refresh callable on the owner's asyncio loop (brokers,
controllers), so gauges computed from a core's state are read on the thread that owns it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from proto.metrics import REGISTRY, Metric, MetricKind, MetricsRegistry

log = logging.getLogger(__name__)

EXPORT_INTERVAL_S = 2.0
GAUGE_REFRESH_INTERVAL_S = 1.0


def ray_initialized() -> bool:
    """True in a Ray worker or a connected driver; never imports ray itself."""
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


class RayExporter:
    """Copies a registry into `ray.util.metrics` objects; one instance per process."""

    def __init__(self, registry: MetricsRegistry = REGISTRY, backend: Any = None) -> None:
        self._registry = registry
        self._backend = backend  # ray.util.metrics (imported at first use); tests pass a fake
        self._ray_metrics: dict[str, Any] = {}
        self._counted: dict[str, dict[tuple[str, ...], float]] = {}
        self._gauges: dict[str, set[tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    @property
    def exported_names(self) -> list[str]:
        """Names of the Ray metric objects created so far."""
        return sorted(self._ray_metrics)

    def _ray_metric(self, metric: Metric) -> Any:
        made = self._ray_metrics.get(metric.name)
        if made is None:
            if self._backend is None:
                from ray.util import metrics  # only where Ray is already running

                self._backend = metrics
            ray_metrics = self._backend
            if metric.kind is MetricKind.COUNTER:
                made = ray_metrics.Counter(metric.name, metric.description, metric.tag_keys)
            elif metric.kind is MetricKind.GAUGE:
                made = ray_metrics.Gauge(metric.name, metric.description, metric.tag_keys)
            else:
                made = ray_metrics.Histogram(metric.name, metric.description,
                                             list(metric.boundaries),  # type: ignore[attr-defined]
                                             metric.tag_keys)
            self._ray_metrics[metric.name] = made
        return made

    def export_once(self) -> int:
        """Run the collectors and push every series to Ray; returns the series pushed."""
        with self._lock:  # the timer thread and an explicit flush never interleave
            self._registry.collect()
            pushed = 0
            for metric in self._registry.metrics():
                series = metric.series()
                if not series and metric.name not in self._gauges:
                    continue
                ray_metric = self._ray_metric(metric)
                if metric.kind is MetricKind.COUNTER:
                    pushed += self._push_counter(metric, ray_metric, series)
                elif metric.kind is MetricKind.GAUGE:
                    pushed += self._push_gauge(metric, ray_metric, series)
                else:
                    for key, child in series:
                        tags = metric.tags_of(key)
                        for value in child.drain():
                            ray_metric.observe(value, tags)
                        pushed += 1
            return pushed

    def _push_counter(self, metric: Metric, ray_metric: Any,
                      series: list[tuple[tuple[str, ...], Any]]) -> int:
        last = self._counted.setdefault(metric.name, {})
        for key, child in series:
            value = child.value
            previous = last.get(key, 0.0)
            if value < previous:  # the series was removed and started again
                previous = 0.0
            if value > previous:
                ray_metric.inc(value - previous, metric.tags_of(key))
            last[key] = value
        return len(series)

    def _push_gauge(self, metric: Metric, ray_metric: Any,
                    series: list[tuple[tuple[str, ...], Any]]) -> int:
        seen = self._gauges.setdefault(metric.name, set())
        current = set()
        for key, child in series:
            ray_metric.set(child.value, metric.tags_of(key))
            current.add(key)
        for key in seen - current:  # Ray cannot drop a series: report a removed one as 0
            ray_metric.set(0.0, metric.tags_of(key))
        self._gauges[metric.name] = current
        return len(series)


class _ExportThread:
    def __init__(self, exporter: RayExporter, interval_s: float) -> None:
        self.exporter = exporter
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rafka-metrics-export",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            if not ray_initialized():  # ray.shutdown() in this process: nothing to push to
                continue
            try:
                self.exporter.export_once()
            except Exception:  # keep exporting: a bad round must not kill the thread
                log.exception("exporting metrics to Ray failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


_export_lock = threading.Lock()
_export: _ExportThread | None = None


def start_export(interval_s: float = EXPORT_INTERVAL_S) -> bool:
    """Start this process's Ray export thread (idempotent); False outside Ray."""
    global _export
    if not ray_initialized():
        return False
    with _export_lock:
        if _export is None:
            _export = _ExportThread(RayExporter(REGISTRY), interval_s)
            _export.start()
            log.info("exporting Rafka metrics through Ray every %.1fs", interval_s)
    return True


def export_now() -> list[str]:
    """Push everything to Ray at once (actors call this before reporting); returns the names of
    the Ray metric objects created so far ([] outside Ray)."""
    if not start_export():
        return []
    assert _export is not None
    _export.exporter.export_once()
    return _export.exporter.exported_names


def stop_export() -> None:
    """Stop the export thread (tests; a process exits without it: the thread is a daemon)."""
    global _export
    with _export_lock:
        thread, _export = _export, None
    if thread is not None:
        thread.stop()


class PeriodicMetrics:
    """Runs `refresh()` now and every `interval_s` on the running asyncio loop."""

    def __init__(self, refresh: Callable[[], None], *, name: str,
                 interval_s: float = GAUGE_REFRESH_INTERVAL_S) -> None:
        self._refresh = refresh
        self._name = name
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        while True:
            try:
                self._refresh()
            except Exception:  # metrics never take a server down
                log.exception("[%s] refreshing metrics failed", self._name)
            await asyncio.sleep(self._interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def metrics_report() -> dict[str, Any]:
    """Push to Ray now, then return {"ray_metrics": names of the Ray metric objects created
    in this process, "snapshot": REGISTRY.snapshot()}."""
    return {"ray_metrics": export_now(), "snapshot": REGISTRY.snapshot()}


class ActorMetricsHooks:
    """The metrics method every Rafka actor exposes (tests, `rafka` tooling)."""

    def metrics(self) -> dict[str, Any]:
        """This process's metrics (see `metrics_report`)."""
        return metrics_report()
