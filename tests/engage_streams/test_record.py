"""The canonical record: its published JSON schema is the one the code defines."""

from __future__ import annotations

import json
from pathlib import Path

from engage_streams.record import record_json_schema

REPO = Path(__file__).resolve().parents[2]


def test_documented_record_schema_is_current() -> None:
    documented = json.loads((REPO / "docs" / "record.schema.json").read_text())
    assert documented == record_json_schema()
