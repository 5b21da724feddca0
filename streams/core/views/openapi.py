"""The OpenAPI 3.0 description of the worker's JSON API (served at ``/api/v1/openapi.json``).

It describes exactly what ``streams.core.views.api`` returns; the tests run schemathesis
against an HTTP server built from those handlers to keep the two in step.
"""

from __future__ import annotations

from typing import Any

from streams.core.gamification.leaderboard import WINDOWS
from streams.core.views.api import DEFAULT_LIMIT, DEFAULT_WINDOW, MAX_LIMIT

Schema = dict[str, Any]


def _object(properties: Schema, required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties) if required is None else required,
        "additionalProperties": False,
    }


def _nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


_COUNT: Schema = {"type": "integer", "minimum": 0}
_SECONDS: Schema = {"type": "number", "minimum": 0}
_TIMESTAMP: Schema = {
    "type": "string",
    "format": "date-time",
    "example": "2024-06-12T12:00:00.000Z",
}
_REF = "#/components/schemas/"


def _ref(name: str) -> Schema:
    return {"$ref": _REF + name}


def _json_response(description: str, schema: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


_SCHEMAS: dict[str, Schema] = {
    "Error": _object({"error": {"type": "string", "description": "what is wrong, and where"}}),
    "Badge": _object(
        {
            "badge": {
                "type": "string",
                "description": "sla_streak_N, first_to_N or cleared_backlog",
                "example": "sla_streak_10",
            },
            "count": {"type": "integer", "minimum": 1, "description": "periods it was earned in"},
        }
    ),
    "LeaderboardEntry": _object(
        {
            "rank": {"type": "integer", "minimum": 1},
            "agent_id": {"type": "string"},
            "name": {"type": "string", "description": "from the agents config, else the id"},
            "score": {"type": "number", "minimum": 0},
            "replies": {"type": "integer", "minimum": 1, "description": "agent contents"},
            "median_response_seconds": _nullable(_SECONDS),
            "badges": {"type": "array", "items": _ref("Badge")},
        }
    ),
    "Leaderboard": _object(
        {
            "window": {"type": "string", "enum": list(WINDOWS)},
            "generated_at": _TIMESTAMP,
            "source": _nullable({"type": "string"}),
            "team": _nullable({"type": "string"}),
            "entries": {"type": "array", "items": _ref("LeaderboardEntry")},
        }
    ),
    "WindowSummary": _object(
        {
            "rank": _nullable({"type": "integer", "minimum": 1}),
            "score": {"type": "number", "minimum": 0},
            "replies": _COUNT,
            "median_response_seconds": _nullable(_SECONDS),
            "badges": {"type": "array", "items": _ref("Badge")},
        }
    ),
    "Agent": _object(
        {
            "agent_id": {"type": "string"},
            "name": {"type": "string"},
            "team": _nullable({"type": "string"}),
            "generated_at": _TIMESTAMP,
            "windows": _object({window: _ref("WindowSummary") for window in WINDOWS}),
        }
    ),
    "Channel": _object(
        {
            "source_id": {"type": "string"},
            "source_type": _nullable({"type": "string"}),
            "source_name": _nullable({"type": "string"}),
            "contents_inbound": _COUNT,
            "contents_outbound": _COUNT,
            "responses": _COUNT,
            "response_seconds_sum": _SECONDS,
            "avg_response_seconds": _nullable(_SECONDS),
            "first_responses": _COUNT,
            "first_response_seconds_sum": _SECONDS,
            "avg_first_response_seconds": _nullable(_SECONDS),
            "within_sla": _COUNT,
            "outside_sla": _COUNT,
            "backlog_contents": _COUNT,
            "backlog_oldest_age_seconds": _nullable(_SECONDS),
        }
    ),
    "Channels": _object(
        {
            "generated_at": _TIMESTAMP,
            "channels": {"type": "array", "items": _ref("Channel")},
        }
    ),
}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def openapi_document(*, bearer_token: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document of the leaderboard, agents and channels endpoints.

    ``bearer_token``: the worker requires ``Authorization: Bearer <WORKER_API_TOKEN>``; the
    document then says so (security scheme, and a 401 answer on every operation).
    """
    document = _document()
    if bearer_token:
        document["components"]["securitySchemes"] = {
            "bearerToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "the worker's WORKER_API_TOKEN",
            }
        }
        document["security"] = [{"bearerToken": []}]
        for operations in document["paths"].values():
            for operation in operations.values():
                operation["responses"]["401"] = _json_response(
                    "The bearer token is missing or wrong", "Error"
                )
    return document


def _document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Engage Streams worker API",
            "version": "1",
            "description": "Leaderboards, agent standings and channel figures for the whole "
            "cluster. Windows are by event time: hour = rolling 60 minutes, today and week = "
            "calendar (ENGAGE_TIMEZONE, weeks start on Monday), all = since the beginning.",
        },
        "paths": {
            "/api/v1/leaderboard": {
                "get": {
                    "operationId": "getLeaderboard",
                    "summary": "Top agents of a window",
                    "parameters": [
                        _query(
                            "window",
                            {"type": "string", "enum": list(WINDOWS), "default": DEFAULT_WINDOW},
                            "hour, today, week or all",
                        ),
                        _query("source", {"type": "string"}, "only this source (channel) id"),
                        _query("team", {"type": "string"}, "only agents of this team"),
                        _query(
                            "limit",
                            {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_LIMIT,
                                "default": DEFAULT_LIMIT,
                            },
                            "how many rows",
                        ),
                    ],
                    "responses": {
                        "200": _json_response("The leaderboard", "Leaderboard"),
                        "400": _json_response("A query parameter is invalid or unknown", "Error"),
                    },
                }
            },
            "/api/v1/agents/{agent_id}": {
                "get": {
                    "operationId": "getAgent",
                    "summary": "One agent's standing in every window",
                    "parameters": [
                        {
                            "name": "agent_id",
                            "in": "path",
                            "required": True,
                            "example": "agent-1",
                            "schema": {
                                "type": "string",
                                "pattern": "^[A-Za-z0-9_:@-]+$",
                                "maxLength": 128,
                            },
                        }
                    ],
                    "responses": {
                        "200": _json_response("The agent", "Agent"),
                        "404": _json_response("No activity and not in the agents config", "Error"),
                    },
                }
            },
            "/api/v1/channels": {
                "get": {
                    "operationId": "getChannels",
                    "summary": "Volumes, response times and backlog per source",
                    "responses": {"200": _json_response("The channels", "Channels")},
                }
            },
        },
        "components": {"schemas": _SCHEMAS},
    }
