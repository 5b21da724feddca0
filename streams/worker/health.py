"""Is this worker alive, and is it ready? One place that knows why not, for ``/readyz`` and
``/metrics``.

Parts of the shell report trouble with ``not_ready(reason, detail)`` and its end with
``ready_again(reason)``; the worker is ready when no reason is left. Reasons are a fixed,
small set (they become a metric label): ``starting`` (until the first partitions are
assigned and loaded), ``recovering`` (a table is being restored from its changelog; with
``recovery_progress`` 0..1), ``kafka_unreachable``, ``not_consuming``, ``commit_failing``,
``state_unwritable``. Details are for people and never hold message bodies or secrets.

``/healthz`` (liveness) does not look here: a worker that is recovering or waiting for the
broker is alive, and killing it would only start the recovery again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REASONS = (
    "starting",
    "recovering",
    "kafka_unreachable",
    "not_consuming",
    "commit_failing",
    "state_unwritable",
)


class WorkerHealth:
    """The worker's readiness, why it is not ready, and the counters operators watch."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._reasons: dict[str, tuple[str, float]] = {}
        self.recovery_progress: float | None = None
        self.rebalances = 0
        self.commit_failures = 0
        self.producer_renewals = 0
        self.not_ready("starting", "waiting for partitions to be assigned")

    def not_ready(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown readiness reason {reason!r}")
        since = self._reasons.get(reason, (detail, self._clock()))[1]
        self._reasons[reason] = (detail, since)

    def ready_again(self, reason: str) -> None:
        self._reasons.pop(reason, None)
        if reason == "recovering":
            self.recovery_progress = None

    @property
    def ready(self) -> bool:
        return not self._reasons

    @property
    def reasons(self) -> dict[str, str]:
        return {reason: detail for reason, (detail, _) in self._reasons.items()}

    def readyz(self, **extra: Any) -> tuple[int, dict[str, Any]]:
        """The ``/readyz`` answer: 200 when ready, else 503 naming every reason."""
        now = self._clock()
        body: dict[str, Any] = {"ready": self.ready, **extra}
        if not self.ready:
            body["reasons"] = {
                reason: {"detail": detail, "for_seconds": round(now - since, 1)}
                for reason, (detail, since) in self._reasons.items()
            }
        if self.recovery_progress is not None:
            body["recovery_progress"] = round(self.recovery_progress, 4)
        return (200 if self.ready else 503), body


class HealthCollector(Collector):
    """``engage_worker_ready``, ``engage_worker_not_ready_info{reason}``, recovery progress,
    rebalances and commit failures of this worker."""

    def __init__(self, health: WorkerHealth) -> None:
        self.health = health

    def collect(self) -> Iterable[Metric]:
        health = self.health
        ready = GaugeMetricFamily(
            "engage_worker_ready", "1 when this worker is ready (see /readyz), else 0."
        )
        ready.add_metric([], 1.0 if health.ready else 0.0)
        yield ready
        reasons = GaugeMetricFamily(
            "engage_worker_not_ready_info",
            "1 for each reason this worker is not ready now.",
            labels=["reason"],
        )
        for reason in health.reasons:
            reasons.add_metric([reason], 1.0)
        yield reasons
        recovering = GaugeMetricFamily(
            "engage_worker_recovering", "1 while a table is restored from its changelog."
        )
        recovering.add_metric([], 1.0 if "recovering" in health.reasons else 0.0)
        yield recovering
        progress = GaugeMetricFamily(
            "engage_worker_recovery_progress_ratio",
            "Share of the changelog restored by the current (or last) recovery, 0..1.",
        )
        progress.add_metric(
            [], 1.0 if health.recovery_progress is None else health.recovery_progress
        )
        yield progress
        rebalances = CounterMetricFamily(
            "engage_consumer_rebalances", "Consumer group rebalances this worker went through."
        )
        rebalances.add_metric([], float(health.rebalances))
        yield rebalances
        failures = CounterMetricFamily(
            "engage_kafka_commit_failures", "Offset commits of this worker that Kafka refused."
        )
        failures.add_metric([], float(health.commit_failures))
        yield failures
        renewals = CounterMetricFamily(
            "engage_worker_producer_renewals",
            "Kafka producers of this worker replaced because the broker lost track of them.",
        )
        renewals.add_metric([], float(health.producer_renewals))
        yield renewals
