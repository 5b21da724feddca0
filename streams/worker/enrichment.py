"""Names of agents (with their team) and of channels, from the Engage or platform REST API.

Pure part: ``agent_profiles(users, teams)``, ``extension_ids(users)`` (from
``engage_streams.rest.classic``, shared with the connector),
``source_names(sources)`` and ``identity_profiles(identities)`` read API records by field
name and ignore what they do not know. Fetching: ``fetch_reference(url, token)`` reads the
classic ``GET /users``, ``GET /teams`` and ``GET /content_sources`` (the channels; the
published OpenAPI spec, ``ringcentral/engage-digital-api-docs``
``specs/engage-digital_openapi3.yaml``, has no ``/sources``) *independently*: one failing
call leaves the others' answers in the result and is named in ``EngageReference.missing``.
``fetch_platform_reference(identities)`` reads the platform's identities, used where the
classic API is not configured (agents are then known by their RingCentral extension id).
The worker merges the result under its agents config file (the file wins) and refreshes it
now and then.

One agent, one row -- where ids are made one: a classic ``creator_id`` is an Engage user id,
a platform ``creatorId`` a RingCentral extension id (``rc_user_id`` on the user record). The
CONNECTOR writes the Engage user id into the record (``connectors.agents``), so the counts
(``engage_agent_replies_total{agent}``, the activity topic, the leaderboard) hold one row per
agent, exactly and replay-safely (nothing downstream rewrites an id). Here, in the display
layer, the same ``extension_ids`` only lets an extension id that still reached Kafka (a platform
only deployment, or a record taken before the connector learnt the agent) show the agent's
name and team; such an id is its own row in the counts, and the ``_info`` metrics list an
agent once by its profile id (plus any alias that has numbers, with the same name).
Merging rows here instead would not be exact: two agents' leaderboard entries (streaks,
medians, badges) cannot be added into one, and a mapping learnt later would change the rows
of a replay.

SLA targets are deliberately not taken from ``sla_response`` here: changing a source's SLA
while a stream runs would make a replay count differently (the SLA config file is the place).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from engage_streams.rest.classic import extension_ids
from engage_streams.settings import Settings, SettingsError
from streams.core.directory import AgentProfile

log = logging.getLogger("streams.enrichment")


@dataclass(frozen=True)
class EngageReference:
    """What the API told us: agent profiles by agent id, other ids of agents, channel names
    by source id, and which collections could not be read (``users``/``teams``/``sources``/
    ``identities``)."""

    agents: Mapping[str, AgentProfile]
    sources: Mapping[str, str]
    aliases: Mapping[str, str] = field(default_factory=dict)
    missing: frozenset[str] = frozenset()


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


def identity_profiles(identities: Iterable[Mapping[str, Any]]) -> dict[str, AgentProfile]:
    """RingCentral extension id -> profile, from the platform's identities: an identity with
    ``userIds`` (or ``userId``) is an agent's; its ``displayName`` (else first and last name,
    else ``screenName``) names that agent. The first named identity of an agent wins."""
    profiles: dict[str, AgentProfile] = {}
    for identity in identities:
        user_ids = identity.get("userIds")
        if not isinstance(user_ids, list):
            single = identity.get("userId")
            user_ids = [single] if single not in (None, "") else []
        full = " ".join(
            str(identity[k]) for k in ("firstName", "lastName") if identity.get(k)
        ).strip()
        name = str(identity.get("displayName") or "") or full or identity.get("screenName")
        if not name:
            continue
        for user_id in user_ids:
            if user_id not in (None, "") and str(user_id) not in profiles:
                profiles[str(user_id)] = AgentProfile(name=str(name))
    return profiles


def merge_reference(
    profiles: dict[str, AgentProfile],
    names: dict[str, str],
    reference: EngageReference,
    configured: frozenset[str],
    aliases: dict[str, str] | None = None,
) -> None:
    """Complete ``profiles``, ``names`` (and ``aliases``) in place; agents of the config file
    keep theirs. A collection that could not be read changes nothing of what is known: when
    the teams are missing, agents keep the team they had. A profile under an id that is
    another id of a known agent (an extension id of ``aliases``, e.g. a platform identity's
    ``userIds``) is not a second agent: it is skipped, and the config file's aliases win."""
    teams_missing = "teams" in reference.missing
    known_aliases = {**reference.aliases, **(aliases or {})}
    for agent_id, profile in reference.agents.items():
        if agent_id in configured:
            continue
        canonical = known_aliases.get(agent_id)
        if canonical is not None and (canonical in profiles or canonical in reference.agents):
            continue  # named under the agent's own id already
        known = profiles.get(agent_id)
        if teams_missing and known is not None and profile.team is None:
            profile = AgentProfile(name=profile.name, team=known.team)
        profiles[agent_id] = profile
    names.update(reference.sources)
    if aliases is not None:
        for alias, agent_id in reference.aliases.items():
            if aliases.get(alias) not in configured:  # the config file's aliases win
                aliases[alias] = agent_id


class _Collections(Protocol):
    def users(self) -> AsyncIterator[dict[str, Any]]: ...
    def teams(self) -> AsyncIterator[dict[str, Any]]: ...
    def sources(self) -> AsyncIterator[dict[str, Any]]: ...


async def fetch_reference(base_url: str, token: str) -> EngageReference:
    """Read users, teams and channels from the classic Engage REST API, each on its own."""
    from engage_streams.rest.classic import EngageRestClient

    async with EngageRestClient(base_url, token) as api:
        return await read_reference(api)


async def read_reference(api: _Collections) -> EngageReference:
    """``fetch_reference`` over any client with ``users()``, ``teams()``, ``sources()``."""
    users, teams, sources = await asyncio.gather(
        _collect("users", api.users()),
        _collect("teams", api.teams()),
        _collect("sources", api.sources()),
    )
    answers = {"users": users, "teams": teams, "sources": sources}
    missing = frozenset(name for name, got in answers.items() if got is None)
    return EngageReference(
        agents=agent_profiles(users or [], teams or []),
        sources=source_names(sources or []),
        aliases=extension_ids(users or []),
        missing=missing,
    )


class _Identities(Protocol):
    def list_identities(self, **filters: str) -> AsyncIterator[dict[str, Any]]: ...


async def fetch_platform_reference(platform: _Identities) -> EngageReference:
    """Agent names from the platform's identities (keyed by RingCentral extension id)."""
    identities = await _collect("identities", platform.list_identities())
    return EngageReference(
        agents=identity_profiles(identities or []),
        sources={},
        missing=frozenset() if identities is not None else frozenset({"identities"}),
    )


async def fetch_platform_names(settings: Settings) -> EngageReference | None:
    """``fetch_platform_reference`` with the platform client of the ``RINGCENTRAL_*``
    settings; ``None`` when they are not configured."""
    from engage_streams.rest.platform import PlatformClient

    try:
        client = PlatformClient.from_settings(settings)
    except SettingsError:
        return None
    async with client:
        return await fetch_platform_reference(client)


async def _collect(
    name: str, records: AsyncIterator[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    """Every record of one collection, or ``None`` (logged, naming the collection) when the
    API failed it: the other collections are still used."""
    try:
        return [record async for record in records]
    except Exception as error:  # an API client's error of any kind: this collection only
        log.warning(
            "event=enrichment_collection_failed collection=%s error=%s: %s",
            name,
            type(error).__name__,
            error,
        )
        return None
