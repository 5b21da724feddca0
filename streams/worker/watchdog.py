"""Is this worker's Kafka I/O going through? Watches writes, commits and the fetch loop.

``KafkaWatchdog`` turns what the shell observes into ``WorkerHealth`` reasons, so that
``/readyz`` answers 503 while the worker cannot do its job and says why:

- ``kafka_unreachable``: a write to Kafka (changelog, activities, summaries) has waited for
  its acknowledgement longer than ``write_patience`` seconds, the last attempt failed, or a
  probe of the cluster's metadata failed; cleared by the next acknowledged write or probe.
- ``commit_failing``: the last offset commit was refused or timed out (each one counted in
  ``health.commit_failures``); cleared by the next commit that goes through.
- ``not_consuming``: outside rebalances, the fetch loop has not come back from Kafka for
  ``fetch_patience`` seconds, or a partition has records waiting and has not moved for
  ``progress_patience`` seconds.

It decides nothing about retrying: the pipeline retries, the watchdog only tells. Times are
monotonic seconds from ``clock``; details never hold message contents.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping

from streams.worker.health import WorkerHealth


class KafkaWatchdog:
    """Readiness from Kafka I/O; see the module docstring."""

    def __init__(
        self,
        health: WorkerHealth,
        *,
        write_patience: float = 5.0,
        fetch_patience: float = 15.0,
        progress_patience: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.health = health
        self.write_patience = write_patience
        self.fetch_patience = fetch_patience
        self.progress_patience = progress_patience
        self.clock = clock
        self._numbers = itertools.count()
        self._writes: dict[int, tuple[str, float]] = {}
        self._write_failure: str | None = None
        self.last_write_ok: float | None = None
        self._positions: dict[int, tuple[int, float]] = {}

    # -- writes ----------------------------------------------------------------------------

    def write_started(self, what: str) -> int:
        """A write is waiting for Kafka; returns its ticket for ``write_done``."""
        ticket = next(self._numbers)
        self._writes[ticket] = (what, self.clock())
        return ticket

    def write_done(self, ticket: int) -> None:
        """The write was acknowledged."""
        self._writes.pop(ticket, None)
        self.last_write_ok = self.clock()
        self._write_failure = None
        self._update_writes()

    def write_abandoned(self, ticket: int) -> None:
        """Nobody waits for the write any more (its partition moved, the worker stops)."""
        self._writes.pop(ticket, None)
        self._update_writes()

    def write_failed(self, what: str, error: BaseException) -> None:
        """An attempt failed and will be retried."""
        self._write_failure = f"{what} failed ({type(error).__name__}), retrying"
        self._update_writes()

    def probe_failed(self, error: BaseException) -> None:
        self._write_failure = f"cluster metadata unavailable ({type(error).__name__})"
        self._update_writes()

    def probe_ok(self) -> None:
        self.last_write_ok = self.clock()
        self._write_failure = None
        self._update_writes()

    def needs_probe(self) -> bool:
        """Nothing was acknowledged lately and nothing is waiting: ask the cluster."""
        last = self.last_write_ok
        return not self._writes and (last is None or self.clock() - last >= self.write_patience)

    def _update_writes(self) -> None:
        now = self.clock()
        waiting = [(now - since, what) for what, since in self._writes.values()]
        oldest = max(waiting, default=None)
        if self._write_failure is not None:
            self.health.not_ready("kafka_unreachable", self._write_failure)
        elif oldest is not None and oldest[0] >= self.write_patience:
            detail = f"{oldest[1]} not acknowledged for {oldest[0]:.0f} s"
            self.health.not_ready("kafka_unreachable", detail)
        else:
            self.health.ready_again("kafka_unreachable")

    # -- commits ---------------------------------------------------------------------------

    def commit_failed(self, error: BaseException) -> None:
        self.health.commit_failures += 1
        self.health.not_ready(
            "commit_failing", f"offset commit failed ({type(error).__name__ or 'timeout'})"
        )

    def commit_ok(self) -> None:
        self.health.ready_again("commit_failing")

    # -- consuming -------------------------------------------------------------------------

    def check(
        self,
        *,
        rebalancing: bool,
        fetch_age: float | None,
        positions: Mapping[int, int],
        lags: Mapping[int, int],
    ) -> None:
        """Re-evaluate every reason (called by the clock tick).

        ``positions``: partition -> last applied offset; ``lags``: partition -> records
        waiting (known end offsets only).
        """
        self._update_writes()
        now = self.clock()
        for partition in list(self._positions):
            if partition not in positions:
                del self._positions[partition]
        stuck: list[int] = []
        for partition, offset in positions.items():
            seen = self._positions.get(partition)
            if seen is None or seen[0] != offset or lags.get(partition, 0) == 0:
                self._positions[partition] = (offset, now)
            elif now - seen[1] >= self.progress_patience:
                stuck.append(partition)
        if rebalancing:
            self.health.ready_again("not_consuming")
            return
        if fetch_age is not None and fetch_age >= self.fetch_patience:
            self.health.not_ready(
                "not_consuming", f"no fetch from Kafka came back for {fetch_age:.0f} s"
            )
        elif stuck:
            self.health.not_ready(
                "not_consuming",
                f"partitions {stuck} have records waiting and did not move for "
                f"{self.progress_patience:.0f} s",
            )
        else:
            self.health.ready_again("not_consuming")
