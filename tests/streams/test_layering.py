"""The core/shell boundary: no module of ``streams.core`` loads a framework.

Each core module is imported in a fresh interpreter (so nothing another test imported can
hide a framework import), and the modules of faust, mode, aiokafka, aiohttp and
prometheus_client loaded by then are listed: there must be none.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import streams.core

FRAMEWORKS = ("faust", "mode", "aiokafka", "aiohttp", "prometheus_client")

_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(%r))))
"""


def frameworks_loaded_by(modules: list[str]) -> list[str]:
    """The frameworks a fresh interpreter has loaded after importing ``modules``."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE % (FRAMEWORKS,), *modules],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded: list[str] = json.loads(result.stdout)
    return loaded


def core_modules() -> list[str]:
    return sorted(
        info.name for info in pkgutil.walk_packages(streams.core.__path__, "streams.core.")
    )


def test_the_core_has_the_rules() -> None:
    names = core_modules()
    for rule in ("responses.threads", "responses.partition", "gamification.leaderboard"):
        assert f"streams.core.{rule}" in names


@pytest.mark.parametrize("module", core_modules())
def test_core_module_imports_no_framework(module: str) -> None:
    assert frameworks_loaded_by([module]) == []


def test_the_probe_sees_a_framework_import() -> None:
    # The shell does import frameworks: the probe must notice, or the test above proves nothing.
    assert set(frameworks_loaded_by(["streams.worker.web"])) >= {"aiohttp", "prometheus_client"}
