"""Readiness: why a worker is not ready, as ``/readyz`` and ``/metrics`` say it."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streams.worker.health import HealthCollector, WorkerHealth


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def exposition(health: WorkerHealth) -> str:
    registry = CollectorRegistry()
    registry.register(HealthCollector(health))
    return generate_latest(registry).decode()


def test_a_new_worker_is_starting_then_ready() -> None:
    clock = Clock()
    health = WorkerHealth(clock)
    clock.now += 2.5
    status, body = health.readyz(owned=[])
    assert status == 503
    assert body["reasons"]["starting"]["for_seconds"] == 2.5
    assert 'engage_worker_not_ready_info{reason="starting"} 1.0' in exposition(health)
    health.ready_again("starting")
    assert health.readyz(owned=[1]) == (200, {"ready": True, "owned": [1]})
    text = exposition(health)
    assert "engage_worker_ready 1.0" in text and "engage_worker_not_ready_info{" not in text


def test_every_reason_is_named_and_progress_shown() -> None:
    health = WorkerHealth(Clock())
    health.ready_again("starting")
    health.not_ready("recovering", "threads table: 3 partitions")
    health.recovery_progress = 0.25
    health.not_ready("commit_failing", "3 commits refused")
    status, body = health.readyz()
    assert status == 503 and set(body["reasons"]) == {"recovering", "commit_failing"}
    assert body["recovery_progress"] == 0.25
    text = exposition(health)
    assert "engage_worker_recovering 1.0" in text
    assert "engage_worker_recovery_progress_ratio 0.25" in text
    health.ready_again("recovering")
    health.ready_again("commit_failing")
    assert health.ready and "engage_worker_recovering 0.0" in exposition(health)


def test_reasons_are_a_fixed_set() -> None:
    with pytest.raises(ValueError, match="unknown readiness reason"):
        WorkerHealth().not_ready("because", "x")
