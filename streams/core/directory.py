"""Who the agents are and what the channels are called, from a JSON config file.

The file (``ENGAGE_AGENTS_CONFIG``, example in ``config/agents.example.json``) reads::

    {"agents": {"<agent_id>": {"name": "Ada Lovelace", "team": "Billing",
                               "rc_user_id": "<RingCentral extension id>"}},
     "sources": {"<source_id>": {"name": "WhatsApp Sales"}}}

Every key is optional. ``rc_user_id`` is the agent's RingCentral extension id (the platform's
``creatorId``, ``rc_user_id`` of the classic ``GET /users``): the connector writes the agent id
for it (``connectors.agents``), and an extension id that still reached a record is shown with
the agent's name (``Directory.aliases``). Agents missing from the file are shown by their id
and belong to no team; channels missing from it are shown by their id (or the name the Engage
API gives). Loaded once at start; ``DirectoryError`` names the key to fix.
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
    """Agent profiles by agent id (read-only), and the other ids of the same agents.

    ``aliases`` maps another id of an agent (a RingCentral extension id, for records that
    kept one) to the agent id its profile is under: such an id is shown with the agent's name
    and team, but iterating the directory gives each agent once (its profile id).
    """

    profiles: Mapping[str, AgentProfile] = field(default_factory=lambda: MappingProxyType({}))
    #: Channel display names by source id.
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def profile(self, agent_id: str) -> AgentProfile | None:
        """The profile of ``agent_id`` (directly, or through an alias), ``None`` if unknown."""
        profile = self.profiles.get(agent_id)
        if profile is None:
            canonical = self.aliases.get(agent_id)
            if canonical is not None:
                profile = self.profiles.get(canonical)
        return profile

    def name(self, agent_id: str) -> str:
        """The display name, or the agent id when the directory has none."""
        profile = self.profile(agent_id)
        return profile.name if profile is not None and profile.name else agent_id

    def team(self, agent_id: str) -> str | None:
        """The agent's team, ``None`` when unknown."""
        profile = self.profile(agent_id)
        return None if profile is None else profile.team

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self.profiles or agent_id in self.aliases

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
    aliases: dict[str, str] = {}  # extension id -> agent id
    for agent_id, entry in agents.items():
        if not isinstance(entry, dict):
            raise DirectoryError(f"{origin}: agents.{agent_id} must be an object")
        extra = sorted(set(entry) - {"name", "team", "rc_user_id"})
        if extra:
            raise DirectoryError(
                f"{origin}: unknown key agents.{agent_id}.{extra[0]} "
                "(expected name, team, rc_user_id)"
            )
        for key in ("name", "team", "rc_user_id"):
            value = entry.get(key)
            if value is not None and not isinstance(value, str):
                raise DirectoryError(
                    f"{origin}: agents.{agent_id}.{key} must be a string (got {value!r})"
                )
        profiles[agent_id] = AgentProfile(name=entry.get("name"), team=entry.get("team"))
        extension_id = entry.get("rc_user_id")
        if extension_id:
            if extension_id in aliases or extension_id in agents:
                raise DirectoryError(
                    f"{origin}: agents.{agent_id}.rc_user_id {extension_id!r} names another "
                    "agent too"
                )
            aliases[extension_id] = agent_id
    return Directory(
        MappingProxyType(profiles),
        MappingProxyType(_sources(document, origin)),
        MappingProxyType(aliases),
    )


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
