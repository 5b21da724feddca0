"""Run real stream workers (``engage-streams worker`` in a child process) and read their metrics.

Used by the integration tests of the worker: start, wait on a condition with a deadline,
``kill -9``, scrape ``/metrics`` and sum series over workers without the ``partition`` label.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from devkit.ports import free_port
from engage_streams.partitioning import partition_for
from engage_streams.record import ContentEvent, encode_event
from engage_streams.settings import Settings
from tests.plugins.processes import CliProcess
from tests.plugins.topics import produce
from tests.references.responses import Expected, reference

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class WorkerProcess(CliProcess):
    command: ClassVar[str] = "worker"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.worker_web_port}"

    @property
    def auth(self) -> dict[str, str]:
        """The ``Authorization`` header its API needs (none unless WORKER_API_TOKEN is set)."""
        token = self.settings.worker_api_token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(self.url + path, params=params, headers=self.auth, timeout=5.0)

    def serving(self) -> bool:
        """Its own web server answers (not the start-up answerer of ``early_web``, nor nothing)."""
        try:
            response = httpx.get(self.url + "/healthz", timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json().get("status") != "starting"

    def scrape(self) -> str | None:
        try:
            response = httpx.get(self.url + "/metrics", headers=self.auth, timeout=5.0)
        except httpx.HTTPError:
            return None
        return response.text if response.status_code == 200 else None


def worker_settings(base: Settings, data_dir: Path, **overrides: object) -> Settings:
    from dataclasses import replace

    return replace(
        base,
        worker_web_port=free_port(),
        data_dir=str(data_dir),
        **overrides,  # type: ignore[arg-type]
    )


def parse_series(text: str, drop: Iterable[str] = ("partition",)) -> Series:
    """Every sample as (name, sorted labels without ``drop``) -> value, summed over ``drop``."""
    dropped = set(drop)
    out: Series = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(
                sorted((k, _normal(k, v)) for k, v in sample.labels.items() if k not in dropped)
            )
            out[(sample.name, labels)] += sample.value
    return dict(out)


def _normal(name: str, value: str) -> str:
    # ``le="5"`` and ``le="5.0"`` are the same bucket bound.
    return str(float(value)) if name == "le" and value != "+Inf" else value


def sum_series(parts: Iterable[Series]) -> Series:
    out: Series = defaultdict(float)
    for part in parts:
        for key, value in part.items():
            out[key] += value
    return dict(out)


def only(series: Series, prefix: str) -> Series:
    return {key: value for key, value in series.items() if key[0].startswith(prefix)}


def labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


def scrape_all(workers: Iterable[WorkerProcess]) -> list[str] | None:
    texts = []
    for worker in workers:
        text = worker.scrape()
        if text is None:
            return None
        texts.append(text)
    return texts


def lag_total(series: Mapping[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(v for (name, _), v in series.items() if name == "engage_stream_lag_messages")


# -- loading a scenario and what it must give -------------------------------------------
PARTITIONS = 4
WINDOW = 10.0


def partition_of(thread_id: str, partitions: int) -> int:
    """Where Kafka's default partitioner puts a record keyed by ``thread_id``."""
    return partition_for(thread_id.encode(), partitions)


def expected_numbers(events: list[ContentEvent], partitions: int) -> Expected:
    by_partition: dict[int, list[ContentEvent]] = defaultdict(list)
    for event in events:
        by_partition[partition_of(event.thread_id, partitions)].append(event)
    total = Expected()
    for part in by_partition.values():
        total.add(reference(part, WINDOW))
    return total


def load_scenario(settings: Settings, events: list[ContentEvent]) -> None:
    asyncio.run(
        produce(
            settings.kafka_bootstrap_servers,
            settings.topic,
            ((e.thread_id.encode(), encode_event(e)) for e in events),
        )
    )
