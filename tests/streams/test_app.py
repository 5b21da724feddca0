"""The worker app is built from an explicit ``Settings``; importing the entry point does nothing.

Each check runs in a fresh interpreter, so no other test's imports or apps interfere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_python(code: str, env: dict[str, str]) -> object:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_entry_point_has_no_side_effect(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    answer = run_python(
        "import json, sys, streams.app; print(json.dumps({'faust': 'faust' in sys.modules}))",
        {"ENGAGE_DATA_DIR": str(data_dir)},
    )
    assert answer == {"faust": False}
    assert not data_dir.exists()


def test_the_entry_point_builds_the_app_from_the_environment(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    answer = run_python(
        "import json, streams.app as entry; app = entry.app; "
        "print(json.dumps({'id': app.conf.id, 'port': app.conf.web_port, "
        "'same': entry.app is app}))",
        {"ENGAGE_DATA_DIR": str(data_dir), "ENGAGE_APP_ID": "from-env", "WORKER_WEB_PORT": "7077"},
    )
    assert answer == {"id": "from-env", "port": 7077, "same": True}
    assert data_dir.is_dir()


def test_build_app_takes_its_settings_not_the_environment(tmp_path: Path) -> None:
    answer = run_python(
        "import json; from engage_streams.settings import Settings; "
        "from streams.worker.app import build_app; "
        f"a = build_app(Settings(app_id='one', data_dir={str(tmp_path / 'a')!r})); "
        f"b = build_app(Settings(app_id='two', data_dir={str(tmp_path / 'b')!r}, "
        "worker_web_port=7001)); "
        "print(json.dumps([a.conf.id, b.conf.id, b.conf.web_port]))",
        {"ENGAGE_APP_ID": "ignored"},
    )
    assert answer == ["one", "two", 7001]
