"""The ``engage-streams`` command: help, settings errors, dispatch, kafka and the demo."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path
from types import ModuleType

import pytest

from devkit.broker import KafkaConfig, LocalKafka
from devkit.ports import free_port
from engage_streams import cli
from engage_streams.settings import Settings

COMMANDS = ["kafka", "connector", "worker", "simulate", "backfill", "subscribe", "demo"]


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_the_commands_settings_with_defaults(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help(command, capsys)
    defaults = {f.metadata["env"]: f.default for f in fields(Settings)}
    assert "settings (environment variables)" in text
    for name in cli.COMMAND_SETTINGS[command]:
        line = next(line for line in text.splitlines() if line.strip().startswith(name + " "))
        default = defaults[name]
        shown = "unset" if default is None else str(default)
        if isinstance(default, bool):
            shown = "1" if default else "0"
        assert shown in line.split(name, 1)[1], line


def test_every_setting_is_documented_by_some_command(capsys: pytest.CaptureFixture[str]) -> None:
    documented = "".join(_help(command, capsys) for command in COMMANDS)
    for f in fields(Settings):
        assert f.metadata["env"] in documented


def test_connector_help_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help("connector", capsys)
    assert "webhook" in text.lower()
    assert "CONNECTOR_PORT" in text and "8080" in text


def test_console_entry_point_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "engage_streams.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_a_bad_setting_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONNECTOR_PORT", "eighty")
    assert cli.main(["connector"]) == 2
    assert "CONNECTOR_PORT" in capsys.readouterr().err


def test_a_missing_dependency_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    handler = cli._dispatch("engage_streams.not_installed:main")
    args = cli.build_parser().parse_args(["backfill"])
    assert handler(Settings(), args) == 2
    err = capsys.readouterr().err
    assert "missing dependency 'engage_streams.not_installed'" in err and "Traceback" not in err


def test_dispatch_hands_over_settings_and_the_arguments_after_double_dash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[Settings, list[str]]] = []
    fake = ModuleType("fake_simulator")
    fake.main = lambda settings, args: calls.append((settings, args)) or 7  # type: ignore[attr-defined,func-returns-value]
    monkeypatch.setitem(sys.modules, "fake_simulator", fake)
    monkeypatch.setenv("CONNECTOR_PORT", "8181")
    args = cli.build_parser().parse_args(["simulate", "--", "--rate", "5"])

    assert cli._dispatch("fake_simulator:main")(Settings.from_env(), args) == 7

    assert calls == [(Settings(connector_port=8181), ["--rate", "5"])]


def test_kafka_status_and_stop_when_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = str(tmp_path / "kafka")
    assert cli.main(["kafka", "status", "--data-dir", data_dir, "--port", "1"]) == 1
    assert "not running" in capsys.readouterr().out
    assert cli.main(["kafka", "stop", "--data-dir", data_dir]) == 0
    assert "was not running" in capsys.readouterr().out


@pytest.mark.kafka
def test_kafka_status_and_start_of_a_running_broker(
    kafka_broker: LocalKafka, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = str(kafka_broker.data_dir)
    # no --port: status reads the port the running broker was started with
    assert cli.main(["kafka", "status", "--data-dir", data_dir]) == 0
    out = capsys.readouterr().out
    assert "is running" in out and kafka_broker.bootstrap_servers in out
    port = str(kafka_broker.config.port)
    assert cli.main(["kafka", "start", "--data-dir", data_dir, "--port", port]) == 0
    assert "already running" in capsys.readouterr().out
    assert kafka_broker.status().running


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str | None]:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)  # the demo exited

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for_line(
    lines: queue.Queue[str | None], needle: str, seen: list[str], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            raise AssertionError(f"the demo exited before {needle!r}:\n{''.join(seen)}")
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"no {needle!r} within {timeout} s; output:\n{''.join(seen)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rpartition(")")[2].split()[0] != "Z"


@pytest.mark.timeout(280)
def test_demo_starts_the_stack_prints_a_working_curl_and_stops_everything(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "CONNECTOR_PORT": str(free_port()),
        "WORKER_WEB_PORT": str(free_port()),
        "ENGAGE_DATA_DIR": str(tmp_path / "state"),
        "ENGAGE_TOPIC_PARTITIONS": "2",
    }
    env.pop("ENGAGE_WEBHOOK_SECRET", None)
    env.pop("ENGAGE_AGENTS_CONFIG", None)  # the demo's directory
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    data_dir = tmp_path / "kafka"
    kafka_port = free_port()
    demo = subprocess.Popen(
        [
            *[sys.executable, "-m", "engage_streams.cli", "demo"],
            *["--data-dir", str(data_dir), "--kafka-port", str(kafka_port)],
            *["--prometheus-port", str(free_port())],
            *["--platform-api-port", str(free_port())],
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: list[str] = []
    try:
        lines = _lines(demo)
        _wait_for_line(lines, "demo is ready", seen, timeout=200)
        _wait_for_line(lines, "Ctrl-C stops everything", seen, timeout=10)
        output = "".join(seen)
        pids = [int(pid) for pid in re.findall(r": pid (\d+)", output)]
        kafka_pid = int((data_dir / "kafka.pid").read_text())
        assert _alive(kafka_pid)
        assert all(_alive(pid) for pid in pids)
        assert f"127.0.0.1:{kafka_port}" in output
        if "connector: pid" in output:
            curl = next(line.strip() for line in seen if line.strip().startswith("curl "))
            sent = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=30)
            assert sent.returncode == 0, sent.stderr
            assert "X-Dimelo-Secret:demo-secret" in curl
        worker = f"http://127.0.0.1:{env['WORKER_WEB_PORT']}"
        _assert_demo_is_lively(worker)
        _assert_the_platform_path_ran(
            f"http://127.0.0.1:{env['CONNECTOR_PORT']}", worker, f"127.0.0.1:{kafka_port}"
        )
    finally:
        demo.send_signal(signal.SIGTERM)
        code = demo.wait(timeout=90)
    assert code == 0, "".join(seen)
    assert not _alive(kafka_pid)
    assert not any(_alive(pid) for pid in pids)
    status = LocalKafka(KafkaConfig(data_dir=data_dir, port=kafka_port)).status()
    assert not status.running


def _assert_demo_is_lively(worker: str) -> None:
    """Within a minute or so: named agents with teams, named channels, numbers that move."""
    import httpx

    from tests.plugins.waiting import wait_for

    def leaders() -> list[dict[str, object]]:
        entries = httpx.get(f"{worker}/api/v1/leaderboard?window=all&limit=50", timeout=5)
        return list(entries.json()["entries"])

    named = wait_for(
        lambda: [e for e in leaders() if e["name"] != e["agent_id"]],
        120,
        "named agents on the leaderboard",
        tolerate=(httpx.HTTPError,),
    )
    assert all(str(e["agent_id"]).startswith("agent-") for e in named)
    replies = sum(int(e["replies"]) for e in leaders())  # type: ignore[call-overload]
    wait_for(
        lambda: sum(int(e["replies"]) for e in leaders()) > replies,  # type: ignore[call-overload]
        60,
        "the leaderboard to move",
        tolerate=(httpx.HTTPError,),
    )
    channels = httpx.get(f"{worker}/api/v1/channels", timeout=5).json()["channels"]
    assert any(c.get("source_name") and c["source_name"] != c["source_id"] for c in channels)


DEMO_DIRECTORY = Path(__file__).resolve().parents[2] / "devkit" / "data" / "demo-directory.json"


def _sample(metrics_text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text page (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def _assert_the_platform_path_ran(connector: str, worker: str, bootstrap: str) -> None:
    """Platform notifications reached the connector and thin ones were resolved through the
    fake platform API; an agent who answered through both webhooks is one leaderboard row,
    under the agent id of the demo directory and its name (never its extension id)."""
    import asyncio
    import json

    import httpx

    from engage_streams.record import decode_event
    from tests.plugins.topics import read_topic
    from tests.plugins.waiting import wait_for

    def connector_metric(name: str, **labels: str) -> float:
        return _sample(httpx.get(f"{connector}/metrics", timeout=5).text, name, **labels)

    wait_for(
        lambda: (
            connector_metric("engage_webhook_requests_total", endpoint="ringcentral", code="200")
            > 0
        ),
        60,
        "platform notifications answered 200 by the connector",
        tolerate=(httpx.HTTPError,),
    )
    wait_for(
        lambda: connector_metric("engage_unresolved_notifications_total", outcome="resolved") > 0,
        90,
        "thin platform notifications resolved",
        tolerate=(httpx.HTTPError,),
    )
    wait_for(
        lambda: all(
            connector_metric("engage_platform_notifications_total", shape=shape) > 0
            for shape in ("nested", "flat", "thin")
        ),
        60,
        "nested, flat and thin platform notifications",
        tolerate=(httpx.HTTPError,),
    )
    assert connector_metric("engage_platform_api_requests_total", call="get_content", code="200")
    assert connector_metric("engage_dlq_events_total", reason="missing_content_id") == 0

    directory = json.loads(DEMO_DIRECTORY.read_text())["agents"]
    extension_ids = {entry["rc_user_id"] for entry in directory.values()}

    def answered_both_ways() -> set[str]:
        topic = asyncio.run(read_topic(bootstrap, "engage.contents", 0))  # every partition
        records = [decode_event(r.value) for r in topic]
        by_origin: dict[str, set[str]] = {"engage": set(), "ringcentral": set()}
        for record in records:
            if record.agent_id is not None and record.origin in by_origin:
                by_origin[record.origin].add(record.agent_id)
        assert not by_origin["ringcentral"] & extension_ids, "an extension id reached Kafka"
        assert by_origin["ringcentral"] <= set(directory), by_origin["ringcentral"]
        return by_origin["engage"] & by_origin["ringcentral"]

    both = wait_for(answered_both_ways, 90, "an agent answering through both webhooks")

    def leaderboard() -> list[dict[str, object]]:
        answer = httpx.get(f"{worker}/api/v1/leaderboard?window=all&limit=100", timeout=5)
        return list(answer.json()["entries"])

    def ranked_both_ways() -> list[dict[str, object]]:
        return [e for e in leaderboard() if e["agent_id"] in both]

    ranked = wait_for(ranked_both_ways, 60, "a two-webhook agent on the leaderboard",
                      tolerate=(httpx.HTTPError,))  # fmt: skip
    entries = leaderboard()
    ids = [str(e["agent_id"]) for e in entries]
    assert len(ids) == len(set(ids)), ids  # one row per agent
    assert not set(ids) & extension_ids, ids
    for entry in ranked:
        assert ids.count(str(entry["agent_id"])) == 1
        assert entry["name"] == directory[str(entry["agent_id"])]["name"]
