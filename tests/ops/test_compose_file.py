"""docker-compose.yml against the Compose Specification, without a Docker engine.

The schema is the Compose Specification's JSON schema as shipped (vendored) in the PyPI
package check-jsonschema (``--builtin-schema vendor.compose-spec``), so no fetched file is
committed here. Also: every image pinned to an exact version, Alertmanager wired to
Prometheus, its secrets taken from the environment that ``.env.example`` documents.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
ALERTMANAGER_CONFIG = REPO / "alertmanager" / "alertmanager.yml"
SCHEMA = ("--builtin-schema", "vendor.compose-spec")
EXACT_VERSION = re.compile(r"^[\w./-]+:v?\d+\.\d+\.\d+$")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *SCHEMA, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_follows_the_compose_specification() -> None:
    result = validate(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_mistyped_key(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    healthcheck:", "    healthckeck:", 1))
    result = validate(broken)
    assert result.returncode != 0
    assert "healthckeck" in result.stdout


def test_every_image_is_pinned_to_an_exact_version() -> None:
    services = compose()["services"]
    for name, service in services.items():
        image = service["image"]
        assert EXACT_VERSION.match(image), (name, image)
        assert "@sha256:" not in image, (name, image)  # versions a human can read
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for name in ("connector", "worker"):  # built here, tagged with the project's version
        assert services[name]["image"] == f"engage-streams:{version}"
    base = re.search(r"^FROM (\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1))


def test_alertmanager_receives_prometheus_alerts_with_secrets_from_the_environment() -> None:
    spec = compose()
    alertmanager = spec["services"]["alertmanager"]
    assert "./alertmanager:/etc/alertmanager:ro" in alertmanager["volumes"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    prometheus_config = yaml.safe_load((REPO / "prometheus" / "prometheus.compose.yml").read_text())
    targets = [
        t for am in prometheus_config["alerting"]["alertmanagers"] for s in am["static_configs"]
        for t in s["targets"]
    ]  # fmt: skip
    assert targets == ["alertmanager:9093"]
    # Each secret file a receiver reads is a compose secret of the alertmanager service, taken
    # from an environment variable that .env.example documents.
    config_text = ALERTMANAGER_CONFIG.read_text()
    read = set(re.findall(r"_file: /run/secrets/(\w+)", config_text))
    assert read and read == set(alertmanager["secrets"])
    documented = {
        line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line
    }
    for secret in read:
        variable = spec["secrets"][secret]["environment"]
        assert variable in documented, variable
    # and the variables compose interpolates are documented too
    wanted = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    assert wanted <= documented, wanted - documented
    assert ".env" in (REPO / ".gitignore").read_text().split()


@pytest.mark.prometheus
def test_amtool_accepts_the_alertmanager_config() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (Debian package prometheus-alertmanager)")
    result = subprocess.run(
        [amtool, "check-config", str(ALERTMANAGER_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.prometheus
@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        ({"severity": "critical", "alertname": "EngageTargetDown"}, "engage-on-call,engage-team"),
        ({"severity": "warning", "alertname": "EngageBacklogGrowing"}, "engage-team"),
        ({"severity": "info", "alertname": "EngageLateContents"}, "engage-team"),
    ],
)
def test_alerts_are_routed_by_severity(labels: dict[str, str], receivers: str) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (Debian package prometheus-alertmanager)")
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}"]
        + [f"{k}={v}" for k, v in labels.items()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers
