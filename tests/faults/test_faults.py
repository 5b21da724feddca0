"""Fault injection on the real pipeline: what Engage acknowledged is counted exactly once.

Each case runs ``engage-streams connector`` and ``engage-streams worker`` processes on the
test broker, streams deliveries through the connector at ~25 per second (a bounded stream;
the sender retries every failed delivery with back-off, as Engage does) and breaks something
in the middle:

- the broker is stopped and started again (same ports and data) -- the worker must say it
  is not ready (503, ``kafka_unreachable``) and resume by itself, without a restart;
- the worker is ``kill -9``-ed five times;
- a second worker joins, then leaves (partitions move twice while records flow);
- the connector is ``kill -9``-ed while requests are in flight;
- the worker's state directory fills up (a small tmpfs; needs root, else skipped): the
  worker says ``state_unwritable`` and loses nothing.

Then every content the connector acknowledged with 200 must be counted exactly once by the
workers' ``engage_contents_total`` (compared by source, source type and direction with the
contents of the acknowledged deliveries). Each case prints one line of figures::

    [faults:quick] broker restart: acknowledged=... counted=... acknowledged_and_lost=0
        counted_twice=0 time_to_resume_s=[...]

Profiles: ``quick`` (default, part of the normal test command: 250 deliveries per case, 500
for the kills, a 6 s broker outage, a 4 s full disk) and ``heavy``, run by hand::

    ENGAGE_FAULTS_PROFILE=heavy .venv/bin/python -m pytest -q -s tests/faults

(1,500 deliveries per case, a 20 s outage, a 20 s full disk). ``-m "not faults"`` leaves
the suite out.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.broker import LocalKafka
from engage_streams.settings import Settings
from tests.faults.rig import (
    PARTITIONS,
    PROFILE,
    Figures,
    Rig,
    pipeline_settings,
    readyz,
    time_until,
)
from tests.plugins.waiting import wait_for
from tests.plugins.workers import WorkerProcess, parse_series

pytestmark = [pytest.mark.kafka, pytest.mark.faults, pytest.mark.timeout(900)]


@pytest.fixture
def rig(kafka_settings: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Rig]:
    seed = sum(map(ord, request.node.name)) % 1000
    rig = Rig(pipeline_settings(kafka_settings), tmp_path, seed=seed)
    try:
        yield rig
    finally:
        rig.close()


def ready(worker: WorkerProcess) -> bool:
    answer = readyz(worker)
    return answer is not None and answer[0] == 200


def not_ready_reasons(worker: WorkerProcess) -> dict[str, object]:
    """The reasons of a 503 from ``/readyz`` (empty when ready or not answering)."""
    answer = readyz(worker)
    if answer is None or answer[0] != 503:
        return {}
    reasons = answer[1].get("reasons")
    return dict(reasons) if isinstance(reasons, dict) else {}


def total(rig: Rig, workers: list[WorkerProcess] | None = None) -> int:
    return sum(rig.counted(workers).values())


def check(figures: Figures, rig: Rig) -> None:
    assert rig.sender is not None
    report = rig.sender.report
    figures.notes.append(f"sender retries={dict(report.refused)}")
    print(figures.line())
    assert report.given_up == 0, "deliveries were never acknowledged"
    assert figures.lost == 0 and figures.doubled == 0, figures.line()


def owned_partitions(worker: WorkerProcess) -> int:
    text = worker.scrape()
    if text is None:
        return 0
    series = parse_series(text, drop=())
    return sum(1 for (name, _) in series if name == "engage_stream_lag_messages")


def test_broker_restart_under_load(rig: Rig, kafka_broker: LocalKafka) -> None:
    worker = rig.worker("w1")
    worker.start()
    rig.start_connector()
    wait_for(lambda: ready(worker), 120, "the worker to be ready", rig.logs)
    sender = rig.start_sender()
    wait_for(lambda: sender.progress >= 0.3, 120, "a third of the stream", rig.logs)
    pid = worker.process.pid if worker.process else None

    kafka_broker.stop()
    down_at = time.monotonic()
    reasons = wait_for(
        lambda: not_ready_reasons(worker), 60, "the worker to say it is not ready", rig.logs
    )
    assert "kafka_unreachable" in reasons, reasons
    metrics = worker.scrape() or ""
    assert 'engage_worker_not_ready_info{reason="kafka_unreachable"} 1.0' in metrics
    assert "engage_worker_ready 0.0" in metrics
    # The outage lasts as long as the profile says, whatever the detection took.
    time.sleep(max(0.0, PROFILE.broker_outage_seconds - (time.monotonic() - down_at)))
    kafka_broker.start()

    acknowledged_before = total_acknowledged(rig)
    resume = time_until(
        lambda: total(rig) > acknowledged_before,
        180,
        "the worker to count new contents",
        rig.logs,
    )
    ready_after = time_until(lambda: ready(worker), 120, "the worker to be ready again", rig.logs)
    counted = rig.wait_until_counted()
    figures = rig.figures("broker restart", counted)
    figures.resume_seconds.append(resume)
    figures.notes.append(f"outage={PROFILE.broker_outage_seconds:.0f}s")
    figures.notes.append(f"503 while down: {sorted(reasons)}")
    figures.notes.append(f"ready again after {ready_after:.1f}s more")
    assert worker.process is not None and worker.process.pid == pid and worker.alive(), (
        "the worker was restarted or died"
    )
    check(figures, rig)


def total_acknowledged(rig: Rig) -> int:
    return sum(rig.acknowledged().values())


def test_worker_kill_9_five_times(rig: Rig) -> None:
    rig.use_stream(PROFILE.deliveries * 2)  # long enough for five restarts
    worker = rig.worker("w1")
    worker.start()
    rig.start_connector()
    wait_for(lambda: ready(worker), 120, "the worker to be ready", rig.logs)
    sender = rig.start_sender()
    resumes: list[float] = []
    for kill in range(PROFILE.worker_kills):
        wait_for(
            lambda: sender.progress >= (kill + 1) / (PROFILE.worker_kills + 2) or sender.done,
            120,
            f"the stream before kill {kill + 1}",
        )
        before = total(rig)
        worker.kill9()
        worker.start()  # same data dir, same group: resumes from its durable state
        resumes.append(
            time_until(
                lambda: total(rig) > before or (sender.done and ready(worker)),
                180,
                f"the worker to resume after kill {kill + 1}",
            )
        )
    counted = rig.wait_until_counted()
    figures = rig.figures(f"worker kill -9 x{PROFILE.worker_kills}", counted)
    figures.resume_seconds = resumes
    check(figures, rig)


def test_second_worker_joins_and_leaves(rig: Rig) -> None:
    first, second = rig.worker("w1"), rig.worker("w2")
    first.start()
    rig.start_connector()
    wait_for(lambda: ready(first), 120, "the first worker to be ready", rig.logs)
    sender = rig.start_sender()
    wait_for(lambda: sender.progress >= 0.2, 120, "a fifth of the stream", rig.logs)
    first_pid = first.process.pid if first.process else None
    second.start()
    shared = time_until(
        lambda: owned_partitions(first) > 0 and owned_partitions(second) > 0,
        180,
        "both workers to own partitions",
    )
    wait_for(lambda: sender.progress >= 0.6 or sender.done, 120, "more of the stream")
    assert second.process is not None
    second.process.terminate()  # leaves the group cleanly
    code = second.process.wait(timeout=60)
    moved_back = time_until(
        lambda: owned_partitions(first) == PARTITIONS, 180, "the first worker to own all again"
    )
    counted = rig.wait_until_counted(timeout=240)
    figures = rig.figures("second worker joins and leaves", counted)
    figures.resume_seconds = [shared, moved_back]
    figures.notes.append(f"second worker exit code {code}")
    assert first.alive() and first.process is not None and first.process.pid == first_pid, (
        "the first worker died during the rebalances:\n" + first.log_tail(80)
    )
    assert code == 0, second.log_tail(80)
    check(figures, rig)


def test_connector_kill_9_mid_request(rig: Rig) -> None:
    worker = rig.worker("w1")
    worker.start()
    rig.start_connector()
    wait_for(lambda: ready(worker), 120, "the worker to be ready", rig.logs)
    sender = rig.start_sender()
    wait_for(lambda: sender.progress >= 0.3, 120, "a third of the stream", rig.logs)
    # At 25 deliveries/s a quiet machine answers each in ~1 ms: a request is in flight ~3 % of
    # the time, so a poll every 0.2 s could miss every one of them in the rest of the stream.
    wait_for(lambda: sender.report.in_flight > 0, 30, "a request in flight", interval=0.001)
    in_flight = sender.report.in_flight
    killed_at = time.monotonic()
    rig.connector.kill9()
    delivered = sender.report.delivered
    rig.start_connector()  # same port: the sender's retries reach it again
    wait_for(
        lambda: sender.report.delivered > delivered or sender.done,
        120,
        "the connector to acknowledge again",
        interval=0.1,
    )
    resume = time.monotonic() - killed_at
    counted = rig.wait_until_counted()
    figures = rig.figures("connector kill -9 mid-request", counted)
    figures.resume_seconds = [resume]
    figures.notes.append(f"requests in flight at the kill: {in_flight}")
    check(figures, rig)


@contextlib.contextmanager
def small_filesystem(path: Path, megabytes: int) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = path / "filler"
    with contextlib.suppress(OSError), filler.open("wb", buffering=0) as out:
        while True:
            out.write(b"\0" * 65536)
    return filler


def test_state_directory_full(rig: Rig, tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "state", 96) as state:
        worker = rig.worker("w1", data_dir=state)
        worker.start()
        rig.start_connector()
        wait_for(lambda: ready(worker), 120, "the worker to be ready", rig.logs)
        sender = rig.start_sender()
        wait_for(lambda: sender.progress >= 0.3, 120, "a third of the stream", rig.logs)
        filler = fill(state)
        reasons = wait_for(
            lambda: "state_unwritable" in not_ready_reasons(worker) and not_ready_reasons(worker),
            90,
            "the worker to say its state is unwritable",
            rig.logs,
        )
        print("state full:", reasons)
        time.sleep(PROFILE.state_full_seconds)  # the disk stays full that long
        filler.unlink()
        freed_at_count = total(rig)
        resume = time_until(
            lambda: total(rig) > freed_at_count or (sender.done and ready(worker)),
            180,
            "the worker to go on once there is space",
        )
        counted = rig.wait_until_counted()
        figures = rig.figures("state directory full", counted)
        figures.resume_seconds = [resume]
        figures.notes.append(f"full for {PROFILE.state_full_seconds:.0f}s")
        check(figures, rig)
