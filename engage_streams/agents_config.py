"""The agents config file's extension ids (``rc_user_id``), read by the connector and simulator.

``ENGAGE_AGENTS_CONFIG`` (``streams.core.directory`` validates and reads all of it for the
worker) may give an agent its RingCentral extension id, as the classic ``GET /users`` does::

    {"agents": {"agent-001": {"name": "Ada Lovelace", "rc_user_id": "400131234001"}}}

``extension_ids_of_config(path)`` gives extension id -> agent id; only that key is read here.
"""

from __future__ import annotations

import json
from pathlib import Path

from engage_streams.settings import SettingsError


def extension_ids_of_config(path: str | Path | None) -> dict[str, str]:
    """Extension id -> agent id from the agents config file's ``rc_user_id`` (empty without
    a file). ``SettingsError`` names the file when it cannot be read as an agents config."""
    if path is None:
        return {}
    try:
        document = json.loads(Path(path).read_bytes())
    except OSError as error:
        message = f"ENGAGE_AGENTS_CONFIG {path}: cannot read ({error.strerror})"
        raise SettingsError(message) from None
    except ValueError as error:
        raise SettingsError(f"ENGAGE_AGENTS_CONFIG {path}: not valid JSON: {error}") from None
    agents = document.get("agents", {}) if isinstance(document, dict) else None
    if not isinstance(agents, dict):
        raise SettingsError(f"ENGAGE_AGENTS_CONFIG {path}: agents must be an object")
    mapping: dict[str, str] = {}
    for agent_id, entry in agents.items():
        extension_id = entry.get("rc_user_id") if isinstance(entry, dict) else None
        if isinstance(extension_id, str) and extension_id:
            mapping[extension_id] = str(agent_id)
    return mapping
