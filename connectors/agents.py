"""One agent, one id: the connector writes the Engage user id for a platform ``creatorId``.

A classic ``creator_id`` is an Engage user id; a platform ``creatorId`` is a RingCentral
extension id. The classic ``GET /users`` records carry both (``id``, ``rc_user_id``).

Where the ids are made one (the decision): at the connector, before the record is written.
The record in Kafka then names the agent as every other record of that agent does, so the
worker's durable totals (``engage_agent_replies_total{agent}``, response histograms), the
activity topic (keyed by agent id) and the leaderboard built from it hold ONE row per agent
-- exactly, and a replay of the topic gives the same rows, because nothing downstream
rewrites ids. Mapping only in the worker's display layer cannot give that: two ids already
counted apart (two leaderboard entries with their own streaks, medians and badges) cannot
be merged into one row exactly, and a mapping learnt after the fact would change the rows of
a replay. The worker's directory still knows both ids of an agent for names (so an extension
id that reached Kafka before the connector learnt it is shown with the agent's name).

``AgentIds`` is the connector's mapping (extension id -> Engage user id). It only grows (an
agent's two ids never change). It is read first from the agents config file
(``ENGAGE_AGENTS_CONFIG``: an agent's ``rc_user_id``, see ``streams.core.directory``), before
the first delivery is served, then from the classic API at start and every
``REFRESH_SECONDS`` while the connector runs (the file wins where both name an extension id).
Without either, it stays empty: platform records keep the extension id, which is then the one
id used for that agent (platform-only deployments see only extension ids).
``engage-streams backfill`` uses the same mapping (``agent_ids_for``), so a backfilled record
names the agent as the live webhook's record does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Final

from engage_streams.agents_config import extension_ids_of_config
from engage_streams.settings import Settings

log = logging.getLogger("connectors.agents")

#: How often the connector reads ``GET /users`` again for new agents.
REFRESH_SECONDS: Final = 600.0
#: Wait after a failed read before trying again.
RETRY_SECONDS: Final = 30.0


class AgentIds(dict[str, str]):
    """Extension id -> Engage user id; grows as agents are learnt, never forgets one.

    ``AgentIds(mapping)`` starts from ``mapping`` (the agents config file's), whose entries
    ``learn`` never changes."""

    def __init__(self, pinned: dict[str, str] | None = None) -> None:
        super().__init__(pinned or {})
        self.pinned = frozenset(self)

    def learn(self, mapping: dict[str, str]) -> int:
        """Add ``mapping`` (but for pinned ids); how many extension ids were new or changed."""
        fresh = {k: v for k, v in mapping.items() if k not in self.pinned and self.get(k) != v}
        self.update(fresh)
        return len(fresh)


def config_agent_ids(path: str | Path | None) -> dict[str, str]:
    """Extension id -> agent id from the agents config file's ``rc_user_id`` (empty without
    a file); ``SettingsError`` names the file when it cannot be read."""
    return extension_ids_of_config(path)


async def agent_ids_for(settings: Settings) -> AgentIds:
    """The mapping as a running connector has it once started: the agents config file's,
    completed from the classic API when it is configured (and answers)."""
    agent_ids = AgentIds(config_agent_ids(settings.agents_config))
    await load_agent_ids(settings, agent_ids)
    return agent_ids


async def load_agent_ids(settings: Settings, agent_ids: AgentIds) -> bool:
    """Read the classic ``GET /users`` once into ``agent_ids``; False when it failed."""
    from engage_streams.rest.classic import EngageApiError, EngageRestClient, extension_ids

    if not settings.engage_api_url or not settings.engage_api_token:
        return False
    try:
        async with EngageRestClient(settings.engage_api_url, settings.engage_api_token) as api:
            users = [user async for user in api.users()]
    except EngageApiError as error:
        log.warning("event=agent_ids_unavailable error=%r", str(error))
        return False
    learnt = agent_ids.learn(extension_ids(users))
    log.info("event=agent_ids_loaded agents=%d new=%d", len(agent_ids), learnt)
    return True


async def keep_agent_ids_fresh(
    settings: Settings, agent_ids: AgentIds, stop: asyncio.Event
) -> None:
    """Load and refresh ``agent_ids`` until ``stop`` (returns at once without a classic API)."""
    if not settings.engage_api_url or not settings.engage_api_token:
        if not agent_ids:
            log.info("event=agent_ids_not_configured (platform records keep extension ids)")
        return
    while not stop.is_set():
        loaded = await load_agent_ids(settings, agent_ids)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REFRESH_SECONDS if loaded else RETRY_SECONDS)
