"""``pip install .`` outside the checkout can run the demo: the wheel carries devkit's data.

The wheel is built from this checkout (no network: no build isolation) and its file list is
read: the broker's pom and logging config, the sample deliveries and the alert rules (a file,
not the checkout's symlink) must be in it, as must every package of the product.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        check=True,
        timeout=300,
        capture_output=True,
    )  # fmt: skip
    (built,) = out.glob("engage_streams-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_carries_what_the_demo_and_broker_read(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for data in (
        "devkit/data/kafka/pom.xml",
        "devkit/data/kafka/log4j2.properties",
        "devkit/data/samples/classic-customer-message.json",
        "devkit/data/prometheus/alerts.yml",
        "streams/worker/wallboard.html",
    ):
        assert data in names, data
    rules = wheel.read("devkit/data/prometheus/alerts.yml")
    assert rules == (REPO / "prometheus" / "alerts.yml").read_bytes()


def test_the_wheel_has_every_package(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for package in ("engage_streams", "connectors", "simulator", "streams/core", "streams/worker",
                    "devkit", "engage_streams/rest"):  # fmt: skip
        assert f"{package}/__init__.py" in names, package
