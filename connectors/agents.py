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
agent's two ids never change), and it is loaded from the classic API at start and refreshed
every ``REFRESH_SECONDS`` while the connector runs. Without ``ENGAGE_API_URL`` /
``ENGAGE_API_TOKEN`` it stays empty: platform records keep the extension id, which is then
the one id used for that agent (platform-only deployments see only extension ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from engage_streams.settings import Settings

log = logging.getLogger("connectors.agents")

#: How often the connector reads ``GET /users`` again for new agents.
REFRESH_SECONDS: Final = 600.0
#: Wait after a failed read before trying again.
RETRY_SECONDS: Final = 30.0


class AgentIds(dict[str, str]):
    """Extension id -> Engage user id; grows as agents are learnt, never forgets one."""

    def learn(self, mapping: dict[str, str]) -> int:
        """Add ``mapping``; how many extension ids were new or changed."""
        changed = sum(1 for k, v in mapping.items() if self.get(k) != v)
        self.update(mapping)
        return changed


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
        log.info("event=agent_ids_not_configured (platform records keep extension ids)")
        return
    while not stop.is_set():
        loaded = await load_agent_ids(settings, agent_ids)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REFRESH_SECONDS if loaded else RETRY_SECONDS)
