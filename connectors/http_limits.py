"""How much of the connector one HTTP client may take: header, body, time and connection limits.

The connector faces the internet, so a client that sends huge headers, trickles its request
(slowloris), never finishes its body, or opens connection after connection must cost a bounded
amount and must not slow down Engage's deliveries. The limits are settings
(``engage_streams.settings``) and every refusal is counted in
``engage_webhook_rejected_total{reason}``:

* ``header_too_large`` (431): a request line or header field over
  ``CONNECTOR_MAX_HEADER_BYTES``; ``too_many_headers`` (431): more than ``CONNECTOR_MAX_HEADERS``;
* ``malformed_request`` (400): not HTTP/1.x that the parser can read;
* ``header_timeout`` (408): a new connection's request headers not complete within
  ``CONNECTOR_HEADER_TIMEOUT_SECONDS``;
* ``body_timeout`` (408): a body not complete within ``CONNECTOR_BODY_TIMEOUT_SECONDS`` of its
  headers; ``body_too_large`` (413): over ``ENGAGE_MAX_BODY_BYTES`` (both counted by the server);
* ``too_many_connections`` (503 + ``Retry-After``, closed at once): a connection beyond
  ``CONNECTOR_MAX_CONNECTIONS`` open ones.

A kept-alive connection that stays idle (or trickles the headers of its next request) longer
than ``CONNECTOR_KEEPALIVE_TIMEOUT_SECONDS`` is closed (aiohttp's keep-alive timer).

Implementation: ``LimitedAppRunner`` is an aiohttp ``AppRunner`` whose server builds
``_LimitedConnection`` protocols (aiohttp's ``RequestHandler`` with a connection count, a
header deadline and error answers that log no request bytes). Nothing here knows about Engage.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_server import Server

from engage_streams.settings import Settings, SettingsError

log = logging.getLogger("connectors.http_limits")

HEADER_TOO_LARGE: Final = "header_too_large"
TOO_MANY_HEADERS: Final = "too_many_headers"
MALFORMED_REQUEST: Final = "malformed_request"
HEADER_TIMEOUT: Final = "header_timeout"
BODY_TIMEOUT: Final = "body_timeout"
BODY_TOO_LARGE: Final = "body_too_large"
TOO_MANY_CONNECTIONS: Final = "too_many_connections"
REJECTION_REASONS: Final = (
    HEADER_TOO_LARGE,
    TOO_MANY_HEADERS,
    MALFORMED_REQUEST,
    HEADER_TIMEOUT,
    BODY_TIMEOUT,
    BODY_TOO_LARGE,
    TOO_MANY_CONNECTIONS,
)

Rejected = Callable[[str], None]
"""Called with the reason of every refusal (the server counts it)."""


@dataclass(frozen=True)
class HttpLimits:
    """The limits of one connector, from its settings (``HttpLimits.of(settings)``)."""

    max_header_bytes: int = 8190
    max_headers: int = 64
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 10.0
    keepalive_timeout_seconds: float = 30.0
    max_connections: int = 512

    @classmethod
    def of(cls, settings: Settings) -> HttpLimits:
        """The limits named by ``settings``; a limit that is not positive is a SettingsError."""
        limits = cls(
            max_header_bytes=settings.connector_max_header_bytes,
            max_headers=settings.connector_max_headers,
            header_timeout_seconds=settings.connector_header_timeout_seconds,
            body_timeout_seconds=settings.connector_body_timeout_seconds,
            keepalive_timeout_seconds=settings.connector_keepalive_timeout_seconds,
            max_connections=settings.connector_max_connections,
        )
        for variable, value in (
            ("CONNECTOR_MAX_HEADER_BYTES", limits.max_header_bytes),
            ("CONNECTOR_MAX_HEADERS", limits.max_headers),
            ("CONNECTOR_HEADER_TIMEOUT_SECONDS", limits.header_timeout_seconds),
            ("CONNECTOR_BODY_TIMEOUT_SECONDS", limits.body_timeout_seconds),
            ("CONNECTOR_KEEPALIVE_TIMEOUT_SECONDS", limits.keepalive_timeout_seconds),
            ("CONNECTOR_MAX_CONNECTIONS", limits.max_connections),
        ):
            if not value > 0:
                raise SettingsError(f"{variable} must be greater than 0 (got {value})")
        return limits


class LimitedAppRunner(web.AppRunner):
    """An ``AppRunner`` whose connections obey ``limits``; refusals go to ``on_rejected``."""

    def __init__(
        self, app: web.Application, limits: HttpLimits, on_rejected: Rejected, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits
        self._on_rejected = on_rejected

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # The protocol class is fixed in Server.__call__: give it ours, with the same settings.
        return _LimitedServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            limits=self._limits,
            on_rejected=self._on_rejected,
            **server._kwargs,
        )


class _LimitedServer(Server):
    def __init__(
        self,
        handler: Callable[[BaseRequest], Awaitable[StreamResponse]],
        *,
        limits: HttpLimits,
        on_rejected: Rejected,
        **kwargs: Any,
    ) -> None:
        kwargs.update(
            max_line_size=limits.max_header_bytes,
            max_field_size=limits.max_header_bytes,
            max_headers=limits.max_headers,
            keepalive_timeout=limits.keepalive_timeout_seconds,
        )
        super().__init__(handler, **kwargs)
        self.limits = limits
        self.on_rejected = on_rejected
        self.open_connections = 0
        make_request = self.request_factory

        def headers_read(
            message: Any, payload: Any, protocol: RequestHandler, writer: Any, task: Any
        ) -> BaseRequest:
            # A request's headers were read: its connection's header deadline is met. (Here,
            # not in a middleware: any middleware costs two coroutine layers per request.)
            if isinstance(protocol, _LimitedConnection):
                protocol.headers_complete()
            return make_request(message, payload, protocol, writer, task)

        self.request_factory = headers_read

    def __call__(self) -> RequestHandler:
        return _LimitedConnection(self, loop=self._loop, **self._kwargs)


def _raw_answer(status_line: str, error: str, extra_headers: str = "") -> bytes:
    """A whole HTTP/1.1 answer, for refusals written before (or instead of) aiohttp's parser."""
    body = orjson.dumps({"error": error})
    head = (
        f"HTTP/1.1 {status_line}\r\nContent-Type: application/json\r\n{extra_headers}"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


_TOO_MANY_CONNECTIONS_ANSWER: Final = _raw_answer(
    "503 Service Unavailable", "too many open connections, retry later", "Retry-After: 1\r\n"
)
_HEADER_TIMEOUT_ANSWER: Final = _raw_answer("408 Request Timeout", "request headers too slow")


class _LimitedConnection(RequestHandler):
    """One client connection: counted, with a deadline for its first request's headers."""

    def __init__(self, manager: _LimitedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limited = manager
        self._counted = False
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._limited
        if server.open_connections >= server.limits.max_connections:
            # Refused before aiohttp sees it: no request task, no parser work. (A stream
            # transport; not an isinstance check: uvloop's do not subclass asyncio's.)
            transport = cast(asyncio.Transport, transport)
            transport.write(_TOO_MANY_CONNECTIONS_ANSWER)
            transport.close()
            server.on_rejected(TOO_MANY_CONNECTIONS)
            return
        server.open_connections += 1
        self._counted = True
        super().connection_made(transport)
        self._header_deadline = self._loop.call_later(
            server.limits.header_timeout_seconds, self._headers_overdue
        )

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._counted = False
            self._limited.open_connections -= 1
        self.headers_complete()
        super().connection_lost(exc)

    def headers_complete(self) -> None:
        """The first request's headers were read: its deadline no longer applies."""
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_overdue(self) -> None:
        self._header_deadline = None
        transport = self.transport
        if transport is None or self._request_in_progress:
            return
        transport.write(_HEADER_TIMEOUT_ANSWER)
        self._limited.on_rejected(HEADER_TIMEOUT)
        self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        """A request aiohttp could not parse (4xx) or a handler that raised (500).

        Unlike aiohttp's own, logs no part of the request (a header may hold the secret) and
        answers JSON like every other refusal.
        """
        self.headers_complete()
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; closing the connection")
        if status >= 500:
            frames = "".join(traceback.format_tb(exc.__traceback__)) if exc else ""
            # The exception's message may quote the request: only its type and where it arose.
            log.error(
                "event=handler_failed error=%s\n%s", type(exc).__name__ if exc else None, frames
            )
            answer = {"error": "internal error"}
        else:
            reason = _parse_failure(exc)
            self._limited.on_rejected(reason)
            log.warning("event=request_rejected reason=%s", reason)
            if reason in (HEADER_TOO_LARGE, TOO_MANY_HEADERS):
                status = 431
                answer = {
                    "error": f"request headers over the limit ({self._limited.limits.max_headers}"
                    f" fields of {self._limited.limits.max_header_bytes} bytes)"
                }
            else:
                answer = {"error": "malformed HTTP request"}
        response = web.Response(
            status=status, body=orjson.dumps(answer), content_type="application/json"
        )
        response.force_close()
        return response


def _parse_failure(exc: BaseException | None) -> str:
    if isinstance(exc, LineTooLong):
        return HEADER_TOO_LARGE
    if isinstance(exc, BadHttpMessage) and "too many headers" in str(exc).lower():
        return TOO_MANY_HEADERS
    return MALFORMED_REQUEST
