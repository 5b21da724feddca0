"""A bad setting ends any command with one line naming the variable, exit code 2.

Run through the real command in a subprocess (``python -m engage_streams.cli``), as an
operator would: no traceback, nothing started, the variable and what is wrong on one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ENGAGE_", "KAFKA_"))}
    return subprocess.run(
        [sys.executable, "-m", "engage_streams.cli", *command],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def files(tmp_path: Path) -> dict[str, str]:
    broken_json = tmp_path / "broken.json"
    broken_json.write_text('{"sources": ')
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    wrong_scoring = tmp_path / "scoring.toml"
    wrong_scoring.write_text('points = "many"\n')
    return {
        "broken_json": str(broken_json),
        "wrong_scoring": str(wrong_scoring),
        "a_file": str(a_file),
    }


CASES = [
    (["worker"], "ENGAGE_TIMEZONE", "Mars/Base", "not a time zone"),
    (["worker"], "ENGAGE_SCORING_CONFIG", "/no/such/scoring.toml", "no such file"),
    (["worker"], "ENGAGE_SCORING_CONFIG", "{wrong_scoring}", "points"),
    (["worker"], "ENGAGE_SLA_CONFIG", "{broken_json}", "not JSON"),
    (["worker"], "ENGAGE_AGENTS_CONFIG", "{broken_json}", "not valid JSON"),
    (["worker"], "ENGAGE_REORDER_WINDOW_SECONDS", "ten", "must be a number"),
    (["worker"], "WORKER_WEB_PORT", "99999", "not a port"),
    (["worker"], "ENGAGE_STORE", "redis://", "rocksdb:// or memory://"),
    (["worker"], "ENGAGE_DATA_DIR", "{a_file}/state", "is not a directory"),
    (["worker"], "ENGAGE_EVENT_LOOP", "trio", "uvloop, asyncio"),
    (["connector"], "ENGAGE_EVENT_LOOP", "tokio", "uvloop, asyncio"),
    (["kafka", "start"], "ENGAGE_DATA_DIR", "{a_file}", "is not a directory"),
    (["connector"], "CONNECTOR_PORT", "eighty", "whole number"),
    (["connector"], "KAFKA_BOOTSTRAP_SERVERS", "kafka-without-port", "not host:port"),
    (["connector"], "ENGAGE_PUBLISH_TIMEOUT_SECONDS", "0", "more than 0"),
    (["simulate"], "ENGAGE_AGENTS_CONFIG", "/no/such/agents.json", "no such file"),
    (["backfill"], "ENGAGE_TOPIC_PARTITIONS", "0", "at least 1"),
    (["demo"], "ENGAGE_TIMEZONE", "Mars/Base", "not a time zone"),
    (["demo"], "ENGAGE_SCORING_CONFIG", "{wrong_scoring}", "points"),
    (["kafka", "status"], "KAFKA_BOOTSTRAP_SERVERS", "localhost:port", "not host:port"),
]


@pytest.mark.parametrize(
    ("command", "variable", "value", "says"),
    CASES,
    ids=[f"{c[0][0]}-{c[1]}-{i}" for i, c in enumerate(CASES)],
)
def test_one_line_naming_the_setting_and_exit_2(
    tmp_path: Path, command: list[str], variable: str, value: str, says: str
) -> None:
    value = value.format(**files(tmp_path))
    result = run(command, {"ENGAGE_DATA_DIR": str(tmp_path / "data"), variable: value})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr + result.stdout
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"engage-streams {command[0]}: {variable}"), lines[0]
    assert says in lines[0], lines[0]
    assert not (tmp_path / "data").exists(), "something started before the check"


def test_good_settings_pass_the_check(tmp_path: Path) -> None:
    from engage_streams.settings import Settings

    agents = tmp_path / "agents.json"
    agents.write_text("{}")
    settings = Settings(timezone="Europe/Paris", agents_config=str(agents), worker_web_port=6066)
    settings.check()
