"""The pipeline the fault tests break: a real broker, connectors, workers, an Engage sender.

``Rig`` starts ``engage-streams connector`` and ``engage-streams worker`` processes on the
test broker (topics of this test only), plays a bounded stream of deliveries through the
connector at a steady rate (``tests.plugins.traffic.EngageSender``) and reads what the
workers export. ``Figures`` is what every fault case prints: contents acknowledged by the
connector but not counted by the workers (lost), counted more than once (doubled), and the
time the pipeline took to resume after the fault.

``PROFILE`` (``ENGAGE_FAULTS_PROFILE=quick|heavy``, default ``quick``) sizes the streams and
the faults; see ``tests/faults/test_faults.py``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from engage_streams.settings import Settings
from engage_streams.topics import create_topics
from tests.plugins.traffic import (
    ConnectorProcess,
    ContentKey,
    EngageSender,
    deliveries_of,
    expected_contents,
    recent_events,
)
from tests.plugins.waiting import wait_for
from tests.plugins.workers import WorkerProcess, parse_series, worker_settings

PARTITIONS = 4


@dataclass(frozen=True)
class Profile:
    name: str
    deliveries: int  # per stream, 2 events each, at ``rate`` per second
    rate: float
    broker_outage_seconds: float
    worker_kills: int
    state_full_seconds: float


PROFILES = {
    "quick": Profile("quick", 250, 25.0, 6.0, 5, 4.0),
    "heavy": Profile("heavy", 1500, 25.0, 20.0, 5, 20.0),
}
PROFILE = PROFILES[os.environ.get("ENGAGE_FAULTS_PROFILE", "quick")]


@dataclass
class Figures:
    """What one fault case measured; ``print()``-ed by every test."""

    case: str
    acknowledged: int = 0
    counted: int = 0
    lost: int = 0
    doubled: int = 0
    resume_seconds: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        resumes = ", ".join(f"{s:.1f}" for s in self.resume_seconds) or "-"
        notes = ("; " + "; ".join(self.notes)) if self.notes else ""
        return (
            f"[faults:{PROFILE.name}] {self.case}: acknowledged={self.acknowledged} "
            f"counted={self.counted} acknowledged_and_lost={self.lost} "
            f"counted_twice={self.doubled} time_to_resume_s=[{resumes}]{notes}"
        )


def pipeline_settings(base: Settings) -> Settings:
    """Topics of this test only, created with ``PARTITIONS`` partitions."""
    suffix = base.app_id.rsplit("-", 1)[-1]
    settings = replace(
        base,
        topic_partitions=PARTITIONS,
        activity_topic=f"engage.agent-activity.{suffix}",
        summary_topic=f"engage.partition-summaries.{suffix}",
        waiting_topic=f"engage.waiting-runs.{suffix}",
        store="rocksdb://",
    )
    asyncio.run(
        create_topics(
            settings.kafka_bootstrap_servers,
            {settings.topic: PARTITIONS, settings.dlq_topic: 1},
        )
    )
    return settings


class Rig:
    """Processes of one fault test; ``close()`` stops whatever is still running."""

    def __init__(self, settings: Settings, tmp_path: Path, *, seed: int) -> None:
        self.settings = settings
        self.tmp_path = tmp_path
        self.seed = seed
        self.use_stream(PROFILE.deliveries)
        self.connector = ConnectorProcess.of(settings, tmp_path / "connector.log")
        self.workers: list[WorkerProcess] = []
        self.sender: EngageSender | None = None

    def use_stream(self, deliveries: int) -> None:
        """The stream to send: ``deliveries`` deliveries of two events each."""
        self.events = recent_events(self.seed, threads=max(20, deliveries // 4))
        self.deliveries = deliveries_of(self.events)[:deliveries]

    def worker(self, name: str, **overrides: object) -> WorkerProcess:
        data_dir = overrides.pop("data_dir", self.tmp_path / name)
        settings = worker_settings(self.settings, Path(str(data_dir)), **overrides)
        worker = WorkerProcess(settings, self.tmp_path / f"{name}.log")
        self.workers.append(worker)
        return worker

    def start_connector(self) -> None:
        self.connector.start()
        wait_for(self.connector.ready, 60, "the connector to be ready", self.connector.log_tail)

    def start_sender(self) -> EngageSender:
        self.sender = EngageSender(self.connector.url, self.deliveries, rate=PROFILE.rate)
        self.sender.start()
        return self.sender

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.connector.stop()

    def logs(self) -> str:
        parts = [f"--- {w.log_path.name}\n{w.log_tail(40)}" for w in self.workers]
        parts.append(f"--- connector\n{self.connector.log_tail(20)}")
        return "\n".join(parts)

    # -- what the workers say ----------------------------------------------------------

    def counted(self, workers: Iterable[WorkerProcess] | None = None) -> Counter[ContentKey]:
        """``engage_contents_total`` summed over (live) workers, by its labels."""
        out: Counter[ContentKey] = Counter()
        for worker in self.workers if workers is None else workers:
            if not worker.alive():
                continue
            text = worker.scrape()
            if text is None:
                continue
            for (name, label_set), value in parse_series(text, drop=("partition",)).items():
                if name == "engage_contents_total" and value:
                    labels = dict(label_set)
                    key = (labels["source"], labels["source_type"], labels["direction"])
                    out[key] += int(value)
        return out

    def acknowledged(self) -> Counter[ContentKey]:
        assert self.sender is not None
        return expected_contents(self.sender.report.acknowledged_events())

    def wait_until_counted(self, timeout: float = 180.0) -> Counter[ContentKey]:
        """Once the sender is done: wait until the workers own every partition, have no
        record left to process and count every acknowledged content (or more); returns
        what they count then."""
        assert self.sender is not None
        self.sender.join(timeout)
        want = sum(self.acknowledged().values())
        seen: dict[str, Counter[ContentKey]] = {}

        def caught_up() -> bool:
            owned, lag = self.partitions_and_lag()
            if owned != PARTITIONS or lag:
                return False
            seen["counted"] = self.counted()
            return sum(seen["counted"].values()) >= want

        wait_for(caught_up, timeout, f"the workers to count {want} contents", self.logs)
        return seen["counted"]

    def partitions_and_lag(self) -> tuple[int, float]:
        """Partitions owned by live workers, and their records not processed yet."""
        owned, lag = 0, 0.0
        for worker in self.workers:
            text = worker.scrape() if worker.alive() else None
            if text is None:
                continue
            for (name, _), value in parse_series(text, drop=()).items():
                if name == "engage_stream_lag_messages":
                    owned += 1
                    lag += value
        return owned, lag

    def figures(self, case: str, counted: Counter[ContentKey]) -> Figures:
        want = self.acknowledged()
        figures = Figures(case, sum(want.values()), sum(counted.values()))
        keys = set(want) | set(counted)
        figures.lost = sum(max(0, want[k] - counted[k]) for k in keys)
        figures.doubled = sum(max(0, counted[k] - want[k]) for k in keys)
        return figures


def time_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    on_fail: Callable[[], str] | None = None,
) -> float:
    """Seconds until ``condition()`` holds (polled every 0.2 s), at most ``timeout``;
    ``on_fail`` (e.g. ``Rig.logs``) adds to the failure's message."""
    started = time.monotonic()
    wait_for(condition, timeout, what, on_fail, interval=0.2)
    return time.monotonic() - started


def readyz(worker: WorkerProcess) -> tuple[int, dict[str, object]] | None:
    try:
        response = worker.get("/readyz")
    except httpx.HTTPError:
        return None
    return response.status_code, response.json()
