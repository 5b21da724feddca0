"""Who the agents are and what the channels are called, from a JSON config file.

The file (``ENGAGE_AGENTS_CONFIG``, example in ``config/agents.example.json``) reads::

    {"agents": {"<agent_id>": {"name": "Ada Lovelace", "team": "Billing"}},
     "sources": {"<source_id>": {"name": "WhatsApp Sales"}}}

Every key is optional. Agents missing from the file are shown by their id and belong to no
team; channels missing from it are shown by their id (or the name the Engage API gives).
Loaded once at start; ``DirectoryError`` names the key to fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType


class DirectoryError(ValueError):
    """The agents config cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class AgentProfile:
    """What the wallboard shows about an agent besides the numbers."""

    name: str | None = None
    team: str | None = None


@dataclass(frozen=True)
class Directory:
    """Agent profiles by agent id (read-only)."""

    profiles: Mapping[str, AgentProfile] = field(default_factory=lambda: MappingProxyType({}))
    #: Channel display names by source id.
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def name(self, agent_id: str) -> str:
        """The display name, or the agent id when the directory has none."""
        profile = self.profiles.get(agent_id)
        return profile.name if profile is not None and profile.name else agent_id

    def team(self, agent_id: str) -> str | None:
        """The agent's team, ``None`` when unknown."""
        profile = self.profiles.get(agent_id)
        return None if profile is None else profile.team

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self.profiles

    def __iter__(self) -> Iterator[str]:
        return iter(self.profiles)


def directory_from_mapping(document: object, *, origin: str = "agents config") -> Directory:
    """Validate a parsed agents document."""
    if not isinstance(document, dict):
        raise DirectoryError(f"{origin}: the top level must be an object with key 'agents'")
    unknown = sorted(set(document) - {"agents", "sources"})
    if unknown:
        raise DirectoryError(f"{origin}: unknown key {unknown[0]} (expected agents, sources)")
    agents = document.get("agents", {})
    if not isinstance(agents, dict):
        raise DirectoryError(f"{origin}: agents must be an object keyed by agent id")
    profiles: dict[str, AgentProfile] = {}
    for agent_id, entry in agents.items():
        if not isinstance(entry, dict):
            raise DirectoryError(f"{origin}: agents.{agent_id} must be an object")
        extra = sorted(set(entry) - {"name", "team"})
        if extra:
            raise DirectoryError(
                f"{origin}: unknown key agents.{agent_id}.{extra[0]} (expected name, team)"
            )
        for key in ("name", "team"):
            value = entry.get(key)
            if value is not None and not isinstance(value, str):
                raise DirectoryError(
                    f"{origin}: agents.{agent_id}.{key} must be a string (got {value!r})"
                )
        profiles[agent_id] = AgentProfile(name=entry.get("name"), team=entry.get("team"))
    return Directory(MappingProxyType(profiles), MappingProxyType(_sources(document, origin)))


def _sources(document: Mapping[str, object], origin: str) -> dict[str, str]:
    sources = document.get("sources", {})
    if not isinstance(sources, dict):
        raise DirectoryError(f"{origin}: sources must be an object keyed by source id")
    names: dict[str, str] = {}
    for source_id, entry in sources.items():
        if not isinstance(entry, dict) or set(entry) != {"name"}:
            raise DirectoryError(f'{origin}: sources.{source_id} must be {{"name": "..."}}')
        if not isinstance(entry["name"], str):
            raise DirectoryError(f"{origin}: sources.{source_id}.name must be a string")
        names[source_id] = entry["name"]
    return names


def load_directory(path: str | Path | None) -> Directory:
    """The directory from a JSON file; ``None`` gives an empty directory."""
    if path is None:
        return Directory()
    file = Path(path)
    try:
        document = json.loads(file.read_bytes())
    except OSError as exc:
        raise DirectoryError(f"{file}: cannot read agents config ({exc.strerror})") from None
    except ValueError as exc:
        raise DirectoryError(f"{file}: not valid JSON: {exc}") from None
    return directory_from_mapping(document, origin=str(file))
