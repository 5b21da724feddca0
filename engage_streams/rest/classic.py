"""A small client of the classic Engage Digital REST API (``https://{account}.api.digital.ringcentral.com/1.0``).

Reads what enrichment and backfill need: ``/contents`` (paged by ``offset``/``limit``, at most
150 a page, filter ``q``), ``/users``, ``/teams``, ``/content_sources`` (the channels: the
published OpenAPI spec has no ``/sources``). Authenticates with a Bearer
token. The API allows 500 requests a minute and answers ``429`` beyond: the client waits as
long as ``Retry-After`` says (else backs off exponentially) and tries again, a bounded number
of times. Other failures raise ``EngageApiError`` naming the path and status (never the token).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final

import httpx

from engage_streams.rest.retry_after import retry_after_seconds

log = logging.getLogger("engage_streams.rest.classic")

MAX_PAGE_SIZE: Final = 150


class EngageApiError(Exception):
    """The Engage API refused or failed a request (the message says which and why)."""


class EngageRestClient:
    """Async client; use as ``async with EngageRestClient(url, token) as api: ...``.

    >>> # async for content in api.contents(q="source:abc order:created_at.asc"): ...
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        max_attempts: int = 6,
        max_wait_seconds: float = 60.0,
        timeout_seconds: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout_seconds,
            transport=transport,
        )
        self._max_attempts = max_attempts
        self._max_wait = max_wait_seconds
        self._sleep = sleep

    async def __aenter__(self) -> EngageRestClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(self, path: str, params: dict[str, str | int] | None = None) -> Any:
        """GET ``path`` as JSON, waiting out rate limits (429)."""
        for attempt in range(self._max_attempts):
            try:
                response = await self._client.get(path, params=params)
            except httpx.TransportError as error:
                if attempt + 1 == self._max_attempts:
                    raise EngageApiError(f"GET {path}: {type(error).__name__}") from None
                await self._sleep(min(self._max_wait, 0.5 * 2**attempt))
                continue
            if response.status_code == 429 or response.status_code >= 500:
                if attempt + 1 == self._max_attempts:
                    break
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                wait = min(self._max_wait, 0.5 * 2**attempt if wait is None else wait)
                log.info("event=engage_api_backoff path=%s code=%d wait=%.1f",
                         path, response.status_code, wait)  # fmt: skip
                await self._sleep(wait)
                continue
            if response.status_code != 200:
                raise EngageApiError(f"GET {path}: HTTP {response.status_code}")
            try:
                return response.json()
            except ValueError:
                raise EngageApiError(f"GET {path}: the answer is not JSON") from None
        raise EngageApiError(f"GET {path}: still rate-limited after {self._max_attempts} tries")

    async def paged(
        self, path: str, *, q: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record of a paged collection (``{count, offset, limit, records}``)."""
        limit = max(1, min(page_size, MAX_PAGE_SIZE))
        offset = 0
        while True:
            params: dict[str, str | int] = {"offset": offset, "limit": limit}
            if q:
                params["q"] = q
            page = await self.get(path, params)
            records = page.get("records") if isinstance(page, dict) else None
            if not isinstance(records, list):
                raise EngageApiError(f"GET {path}: field 'records' must be a list")
            for record in records:
                if isinstance(record, dict):
                    yield record
            offset += len(records)
            count = page.get("count")
            if not records or (isinstance(count, int) and offset >= count):
                return

    def contents(
        self, q: str | None = None, *, oldest_first: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """Contents matching ``q`` (newest first, as the API gives them, unless asked)."""
        if oldest_first:
            q = f"{q} order:created_at.asc" if q else "order:created_at.asc"
        return self.paged("/contents", q=q)

    def users(self) -> AsyncIterator[dict[str, Any]]:
        return self.paged("/users")

    def teams(self) -> AsyncIterator[dict[str, Any]]:
        return self.paged("/teams")

    def sources(self) -> AsyncIterator[dict[str, Any]]:
        """The channels (``GET /content_sources``: name, type, sla_response, ...)."""
        return self.paged("/content_sources")


def extension_ids(users: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """RingCentral extension id (``rc_user_id``) -> Engage user id (``id``) of ``GET /users``
    records: a platform ``creatorId`` is the former, a classic ``creator_id`` the latter."""
    mapping: dict[str, str] = {}
    for user in users:
        user_id, extension_id = user.get("id"), user.get("rc_user_id")
        if user_id is None or extension_id is None or extension_id == "":
            continue
        mapping[str(extension_id)] = str(user_id)
    return mapping
