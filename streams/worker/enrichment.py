"""Names from the Engage REST API: agents (with their team) and channels (sources).

``agent_profiles(users, teams)`` and ``source_names(sources)`` are pure: they read the
records of ``GET /users``, ``/teams`` and ``/sources`` by field name and ignore what they do
not know. ``fetch_reference(url, token)`` calls the API with
``engage_streams.rest.classic``. The worker merges the result under its agents config file
(the file wins) when ``ENGAGE_API_URL`` and ``ENGAGE_API_TOKEN`` are set, and refreshes it
now and then.

SLA targets are deliberately not taken from ``sla_response`` here: changing a source's SLA
while a stream runs would make a replay count differently (the SLA config file is the place).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streams.core.directory import AgentProfile


@dataclass(frozen=True)
class EngageReference:
    """What the API told us: agent profiles by user id, channel names by source id."""

    agents: Mapping[str, AgentProfile]
    sources: Mapping[str, str]


def agent_profiles(
    users: Iterable[Mapping[str, Any]], teams: Iterable[Mapping[str, Any]]
) -> dict[str, AgentProfile]:
    """User id -> profile: ``firstname lastname`` (else nickname, else email's local part)
    and the name of the user's first team."""
    team_names = {
        str(team["id"]): str(team["name"])
        for team in teams
        if team.get("id") is not None and team.get("name")
    }
    profiles: dict[str, AgentProfile] = {}
    for user in users:
        user_id = user.get("id")
        if user_id is None:
            continue
        full = " ".join(str(user[k]) for k in ("firstname", "lastname") if user.get(k)).strip()
        email = str(user.get("email") or "")
        name = full or str(user.get("nickname") or "") or email.split("@", 1)[0] or None
        team_ids = user.get("team_ids") or []
        team = next(
            (team_names[str(t)] for t in team_ids if str(t) in team_names),
            None,
        )
        profiles[str(user_id)] = AgentProfile(name=name, team=team)
    return profiles


def source_names(sources: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Source id -> its name in Engage."""
    return {
        str(source["id"]): str(source["name"])
        for source in sources
        if source.get("id") is not None and source.get("name")
    }


def merge_reference(
    profiles: dict[str, AgentProfile],
    names: dict[str, str],
    reference: EngageReference,
    configured: frozenset[str],
) -> None:
    """Complete ``profiles`` and ``names`` in place; agents of the config file keep theirs."""
    for agent_id, profile in reference.agents.items():
        if agent_id not in configured:
            profiles[agent_id] = profile
    names.update(reference.sources)


async def fetch_reference(base_url: str, token: str) -> EngageReference:
    """Read users, teams and sources from the Engage REST API."""
    from engage_streams.rest.classic import EngageRestClient

    async with EngageRestClient(base_url, token) as api:
        users = [user async for user in api.users()]
        teams = [team async for team in api.teams()]
        sources = [source async for source in api.sources()]
    return EngageReference(agent_profiles(users, teams), source_names(sources))
