"""The Kafka watchdog: which readiness reason each observed trouble gives, and when it ends."""

from __future__ import annotations

from aiokafka.errors import KafkaTimeoutError

from streams.worker.health import WorkerHealth
from streams.worker.watchdog import KafkaWatchdog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def watched() -> tuple[KafkaWatchdog, WorkerHealth, Clock]:
    clock = Clock()
    health = WorkerHealth(clock)
    health.ready_again("starting")
    return KafkaWatchdog(health, clock=clock), health, clock


def test_a_write_waiting_too_long_means_kafka_is_unreachable_until_acknowledged() -> None:
    watchdog, health, clock = watched()
    ticket = watchdog.write_started("flush of partition 2")
    clock.now += 4.0
    watchdog.check(rebalancing=False, fetch_age=0.5, positions={}, lags={})
    assert health.ready
    clock.now += 2.0
    watchdog.check(rebalancing=False, fetch_age=0.5, positions={}, lags={})
    assert "flush of partition 2 not acknowledged for 6 s" in health.reasons["kafka_unreachable"]
    watchdog.write_done(ticket)
    assert health.ready


def test_a_failed_attempt_is_reported_at_once_and_cleared_by_the_next_success() -> None:
    watchdog, health, _ = watched()
    ticket = watchdog.write_started("agent activity")
    watchdog.write_failed("agent activity", KafkaTimeoutError())
    assert "KafkaTimeoutError" in health.reasons["kafka_unreachable"]
    watchdog.write_done(ticket)
    assert health.ready


def test_commit_failures_are_counted_and_clear_on_the_next_commit() -> None:
    watchdog, health, _ = watched()
    watchdog.commit_failed(TimeoutError())
    watchdog.commit_failed(TimeoutError())
    assert health.commit_failures == 2 and "commit_failing" in health.reasons
    watchdog.commit_ok()
    assert health.ready and health.commit_failures == 2


def test_not_consuming_when_the_fetch_loop_is_stale_outside_rebalances() -> None:
    watchdog, health, _ = watched()
    watchdog.check(rebalancing=True, fetch_age=60.0, positions={0: 5}, lags={0: 0})
    assert health.ready  # recovering or rebalancing: Faust holds the fetch loop on purpose
    watchdog.check(rebalancing=False, fetch_age=60.0, positions={0: 5}, lags={0: 0})
    assert "no fetch from Kafka came back for 60 s" in health.reasons["not_consuming"]
    watchdog.check(rebalancing=False, fetch_age=0.2, positions={0: 5}, lags={0: 0})
    assert health.ready


def test_not_consuming_when_records_wait_and_the_partition_does_not_move() -> None:
    watchdog, health, clock = watched()
    watchdog.check(rebalancing=False, fetch_age=0.1, positions={0: 5, 1: 9}, lags={0: 3, 1: 0})
    clock.now += 31.0
    watchdog.check(rebalancing=False, fetch_age=0.1, positions={0: 5, 1: 9}, lags={0: 3, 1: 0})
    assert "partitions [0]" in health.reasons["not_consuming"]
    watchdog.check(rebalancing=False, fetch_age=0.1, positions={0: 8, 1: 9}, lags={0: 0, 1: 0})
    assert health.ready


def test_a_probe_is_asked_for_only_when_nothing_was_acknowledged_lately() -> None:
    watchdog, health, clock = watched()
    assert watchdog.needs_probe()
    watchdog.probe_failed(OSError("refused"))
    assert "cluster metadata unavailable" in health.reasons["kafka_unreachable"]
    watchdog.probe_ok()
    assert health.ready and not watchdog.needs_probe()
    clock.now += 5.0
    assert watchdog.needs_probe()
    watchdog.write_started("partition summaries")
    assert not watchdog.needs_probe()
