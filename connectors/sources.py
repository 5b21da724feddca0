"""One channel, one label: the classic ``source_type`` of each source, as the connector knows it.

A classic record spells a channel's type as the classic API does (``whatsapp``,
``google_my_business``); a platform content names it its own way (``WhatsApp``,
``FacebookMessenger``). The SLA policy (``streams.core.responses.sla``), the scoring weights
and the ``source_type`` label of every metric read the classic spelling, so the connector
writes that spelling into every record, whichever webhook reported the content.

``SourceTypes`` is the connector's mapping (source id -> classic type). It is learnt from the
classic API's ``GET /content_sources`` (``type``; at start and every ``REFRESH_SECONDS``, when
the classic API is configured) and from every classic record the connector takes (its
``source_id``/``source_type``); the API's answer wins. A platform record of a source it knows
gets that type (``connectors.envelopes``); of a source it does not know, the platform's type
spelt the classic way (``classic_source_type``). Source ids are the same in both APIs.
``engage-streams backfill`` uses the same mapping (``source_types_for``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

from engage_streams.record import ContentEvent
from engage_streams.settings import Settings

log = logging.getLogger("connectors.sources")

#: How often the connector reads ``GET /content_sources`` again for new channels.
REFRESH_SECONDS: Final = 600.0
#: Wait after a failed read before trying again.
RETRY_SECONDS: Final = 30.0


class SourceTypes(dict[str, str]):
    """Source id -> classic source type; grows as channels are learnt."""

    def learn(self, mapping: Mapping[str, str]) -> int:
        """Take the API's types (they win); how many source ids were new or changed."""
        fresh = {k: v for k, v in mapping.items() if self.get(k) != v}
        self.update(fresh)
        return len(fresh)

    def note(self, records: Iterable[ContentEvent]) -> None:
        """Learn the type of a source not known yet from classic records."""
        for record in records:
            source_id, source_type = record.source_id, record.source_type
            if source_id is not None and source_type is not None and source_id not in self:
                self[source_id] = source_type


def source_types_of(sources: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Source id -> ``type``, from ``GET /content_sources`` records."""
    return {
        str(source["id"]): str(source["type"])
        for source in sources
        if source.get("id") is not None and isinstance(source.get("type"), str) and source["type"]
    }


async def source_types_for(settings: Settings) -> SourceTypes:
    """The mapping as a running connector has it once started (from the classic API, when
    it is configured and answers)."""
    source_types = SourceTypes()
    await load_source_types(settings, source_types)
    return source_types


async def load_source_types(settings: Settings, source_types: SourceTypes) -> bool:
    """Read the classic ``GET /content_sources`` once into ``source_types``; False when it
    failed (or the classic API is not configured)."""
    from engage_streams.rest.classic import EngageApiError, EngageRestClient

    if not settings.engage_api_url or not settings.engage_api_token:
        return False
    try:
        async with EngageRestClient(settings.engage_api_url, settings.engage_api_token) as api:
            sources = [source async for source in api.sources()]
    except EngageApiError as error:
        log.warning("event=source_types_unavailable error=%r", str(error))
        return False
    learnt = source_types.learn(source_types_of(sources))
    log.info("event=source_types_loaded sources=%d new=%d", len(source_types), learnt)
    return True


async def keep_source_types_fresh(
    settings: Settings, source_types: SourceTypes, stop: asyncio.Event
) -> None:
    """Load and refresh ``source_types`` until ``stop`` (returns at once without a classic
    API: classic records still teach it, and platform types are spelt the classic way)."""
    if not settings.engage_api_url or not settings.engage_api_token:
        return
    while not stop.is_set():
        loaded = await load_source_types(settings, source_types)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REFRESH_SECONDS if loaded else RETRY_SECONDS)
