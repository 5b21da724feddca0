"""Run real stream workers (``engage-streams worker`` in a child process) and read their metrics.

Used by the integration tests of the worker: start, wait on a condition with a deadline,
``kill -9``, scrape ``/metrics`` and sum series over workers without the ``partition`` label.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from engage_streams.localkafka import free_port
from engage_streams.settings import Settings
from streams.worker import export_settings

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class WorkerProcess:
    settings: Settings
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.worker_web_port}"

    def start(self) -> None:
        saved = dict(os.environ)
        try:
            export_settings(self.settings)
            env = dict(os.environ)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engage_streams.cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
            start_new_session=True,
        )

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def auth(self) -> dict[str, str]:
        """The ``Authorization`` header its API needs (none unless WORKER_API_TOKEN is set)."""
        token = self.settings.worker_api_token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(self.url + path, params=params, headers=self.auth, timeout=5.0)

    def scrape(self) -> str | None:
        try:
            response = httpx.get(self.url + "/metrics", headers=self.auth, timeout=5.0)
        except httpx.HTTPError:
            return None
        return response.text if response.status_code == 200 else None

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


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


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, on_fail: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{on_fail()}")


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
