"""The worker's HTTP API as plain functions: query in, ``(status, JSON-ready body)`` out.

The web adapter (``streams/web.py``) parses nothing itself: it passes the query string, the
path parameter and the clock to these handlers and writes what they return. Each 400/404 body
is ``{"error": "..."}`` naming the parameter and what is wrong with it. Responses are described
by ``streams.core.views.openapi.openapi_document()``. No framework is imported here.

- ``leaderboard_view`` — ``GET /api/v1/leaderboard?window=&source=&team=&limit=``
- ``agent_view`` — ``GET /api/v1/agents/{agent_id}``
- ``channels_view`` — ``GET /api/v1/channels`` from ``ChannelSummary`` values
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from engage_streams.timefmt import utc_iso
from streams.core.directory import Directory
from streams.core.gamification.leaderboard import WINDOWS, Standings, Window
from streams.core.responses.channels import ChannelFigures

DEFAULT_WINDOW: Window = "today"
DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
LEADERBOARD_PARAMETERS = ("window", "source", "team", "limit")

Body = dict[str, Any]


class ChannelSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One channel (source) for ``GET /api/v1/channels``, summed over the cluster."""

    source_id: str
    source_type: str | None
    source_name: str | None = None
    contents_inbound: int
    contents_outbound: int
    responses: int
    response_seconds_sum: float
    first_responses: int
    first_response_seconds_sum: float
    within_sla: int
    outside_sla: int
    backlog_contents: int
    backlog_oldest_age_seconds: float | None


def _error(status: int, message: str) -> tuple[int, Body]:
    # Errors name the parameter, never echo a value: whatever a client put in a URL (a token
    # pasted by mistake, someone's words) must not come back in an answer or a proxy's cache.
    return status, {"error": message}


def _echo(name: str) -> str:
    """A parameter name as shown in an error: itself when it looks like one, else nothing."""
    return repr(name) if name.isidentifier() and len(name) <= 32 else "(name not shown)"


def leaderboard_view(
    standings: Standings, directory: Directory, query: Mapping[str, str], now: float
) -> tuple[int, Body]:
    """``GET /api/v1/leaderboard``: the top agents of a window (default ``today``, 10 rows)."""
    for key in query:
        if key not in LEADERBOARD_PARAMETERS:
            return _error(
                400,
                f"unknown query parameter {_echo(key)} "
                f"(expected {', '.join(LEADERBOARD_PARAMETERS)})",
            )
    window = query.get("window", DEFAULT_WINDOW)
    if window not in WINDOWS:
        return _error(400, f"window must be one of {', '.join(WINDOWS)}")
    raw_limit = query.get("limit", str(DEFAULT_LIMIT))
    is_number = raw_limit.isascii() and raw_limit.isdigit()
    limit = int(raw_limit) if is_number else 0
    if not 1 <= limit <= MAX_LIMIT:
        return _error(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    source = query.get("source") or None
    team = query.get("team") or None
    entries = standings.leaderboard(window, now, source=source, team=team, limit=limit)
    rows = []
    for entry in entries:
        row = msgspec.to_builtins(entry)
        row["name"] = directory.name(entry.agent_id)
        rows.append(row)
    return 200, {
        "window": window,
        "generated_at": utc_iso(now),
        "source": source,
        "team": team,
        "entries": rows,
    }


def agent_view(
    standings: Standings, directory: Directory, agent_id: str, now: float
) -> tuple[int, Body]:
    """``GET /api/v1/agents/{agent_id}``: the agent in every window; 404 if never heard of."""
    summary = standings.agent(agent_id, now)
    if summary is None and agent_id not in directory:
        return _error(404, "unknown agent: no activity and not in the agents config")
    if summary is None:
        empty = {"rank": None, "score": 0.0, "replies": 0, "median_response_seconds": None}
        windows: dict[str, Any] = {w: {**empty, "badges": []} for w in WINDOWS}
    else:
        windows = msgspec.to_builtins(summary.windows)
    return 200, {
        "agent_id": agent_id,
        "name": directory.name(agent_id),
        "team": directory.team(agent_id),
        "generated_at": utc_iso(now),
        "windows": windows,
    }


def _average(total: float, count: int) -> float | None:
    return total / count if count else None


def channels_view(channels: Sequence[ChannelSummary], now: float) -> tuple[int, Body]:
    """``GET /api/v1/channels``: volumes, response times and backlog per source."""
    rows = []
    for channel in sorted(channels, key=lambda c: c.source_id):
        row = msgspec.to_builtins(channel)
        row["avg_response_seconds"] = _average(channel.response_seconds_sum, channel.responses)
        row["avg_first_response_seconds"] = _average(
            channel.first_response_seconds_sum, channel.first_responses
        )
        rows.append(row)
    return 200, {"generated_at": utc_iso(now), "channels": rows}


def channel_summaries(
    figures: Iterable[ChannelFigures], now: float, names: Mapping[str, str] | None = None
) -> list[ChannelSummary]:
    """The cluster's merged channel figures as ``ChannelSummary`` values at ``now``."""
    summaries = []
    for figure in figures:
        oldest = figure.backlog_oldest_time
        summaries.append(
            ChannelSummary(
                source_id=figure.source_id,
                source_type=figure.source_type,
                source_name=(names or {}).get(figure.source_id),
                contents_inbound=figure.contents_inbound,
                contents_outbound=figure.contents_outbound,
                responses=figure.response.count,
                response_seconds_sum=figure.response.sum,
                first_responses=figure.first_response.count,
                first_response_seconds_sum=figure.first_response.sum,
                within_sla=figure.within_sla,
                outside_sla=figure.outside_sla,
                backlog_contents=figure.backlog_contents,
                backlog_oldest_age_seconds=(
                    None
                    if oldest is None or figure.backlog_contents == 0
                    else max(0.0, now - oldest)
                ),
            )
        )
    return summaries
