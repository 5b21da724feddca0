"""The SLA policy (``streams.core.responses.sla``): defaults by channel kind, the config file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.core.responses.sla import SlaConfigError, SlaPolicy


def test_sla_defaults_by_channel_kind() -> None:
    policy = SlaPolicy()
    assert policy.seconds_for("x", "email") == 3600.0
    assert policy.seconds_for("x", "google_my_business") == 3600.0
    assert policy.seconds_for("x", "GoogleReviews") == 3600.0
    assert policy.seconds_for("x", "whatsapp") == 300.0
    assert policy.seconds_for("x", None) == 300.0


def test_sla_config_file(tmp_path: Path) -> None:
    path = tmp_path / "sla.json"
    path.write_text(
        '{"default_async_seconds": 7200, "default_messaging_seconds": 120,'
        ' "async_source_types": ["email"], "sources": {"wa-vip": 30}}'
    )
    policy = SlaPolicy.from_file(path)
    assert policy.seconds_for("wa-vip", "whatsapp") == 30.0
    assert policy.seconds_for("wa-2", "whatsapp") == 120.0
    assert policy.seconds_for("mb", "email") == 7200.0
    assert policy.seconds_for("gr", "google_my_business") == 120.0  # not async in this file


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ('{"default_async_seconds": "soon"}', "default_async_seconds"),
        ('{"default_messaging_seconds": -1}', "default_messaging_seconds"),
        ('{"sources": {"wa-1": true}}', "sources.wa-1"),
        ('{"sources": []}', "sources"),
        ('{"async_source_types": "email"}', "async_source_types"),
        ('{"defaults": 1}', "defaults"),
        ("[1]", "JSON object"),
        ("{", "not JSON"),
    ],
)
def test_sla_config_errors_name_the_field(tmp_path: Path, config: str, field: str) -> None:
    path = tmp_path / "sla.json"
    path.write_text(config)
    with pytest.raises(SlaConfigError, match=re.escape(field)):
        SlaPolicy.from_file(path)
