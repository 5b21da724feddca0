"""Every setting of the product, with its default, read from the environment once.

One object (``Settings``) holds the defaults named in ``shared/CONTRACT.md``; commands build
it with ``Settings.from_env()`` and may override fields from CLI flags with
``dataclasses.replace``. A bad value raises ``SettingsError`` naming the variable to fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """All settings; field ``x_y`` is read from the environment variable in ``metadata``."""

    kafka_bootstrap_servers: str = field(
        default="127.0.0.1:9092", metadata={"env": "KAFKA_BOOTSTRAP_SERVERS"}
    )
    topic: str = field(default="engage.contents", metadata={"env": "ENGAGE_TOPIC"})
    dlq_topic: str = field(default="engage.contents.dlq", metadata={"env": "ENGAGE_DLQ_TOPIC"})
    activity_topic: str = field(
        default="engage.agent-activity", metadata={"env": "ENGAGE_ACTIVITY_TOPIC"}
    )
    summary_topic: str = field(
        default="engage.partition-summaries", metadata={"env": "ENGAGE_SUMMARY_TOPIC"}
    )
    connector_host: str = field(default="127.0.0.1", metadata={"env": "CONNECTOR_HOST"})
    connector_port: int = field(default=8080, metadata={"env": "CONNECTOR_PORT"})
    webhook_secret: str | None = field(default=None, metadata={"env": "ENGAGE_WEBHOOK_SECRET"})
    allow_unauthenticated: bool = field(
        default=False, metadata={"env": "ENGAGE_ALLOW_UNAUTHENTICATED"}
    )
    verify_token: str | None = field(default=None, metadata={"env": "ENGAGE_VERIFY_TOKEN"})
    ringcentral_verification_token: str | None = field(
        default=None, metadata={"env": "RINGCENTRAL_VERIFICATION_TOKEN"}
    )
    forward_body: bool = field(default=False, metadata={"env": "ENGAGE_FORWARD_BODY"})
    max_body_bytes: int = field(default=1024 * 1024, metadata={"env": "ENGAGE_MAX_BODY_BYTES"})
    publish_timeout_seconds: float = field(
        default=5.0, metadata={"env": "ENGAGE_PUBLISH_TIMEOUT_SECONDS"}
    )
    # HTTP limits of the connector (it faces the internet): see connectors/http_limits.py.
    connector_max_header_bytes: int = field(
        default=8190, metadata={"env": "CONNECTOR_MAX_HEADER_BYTES"}
    )
    connector_max_headers: int = field(default=64, metadata={"env": "CONNECTOR_MAX_HEADERS"})
    connector_header_timeout_seconds: float = field(
        default=10.0, metadata={"env": "CONNECTOR_HEADER_TIMEOUT_SECONDS"}
    )
    connector_body_timeout_seconds: float = field(
        default=10.0, metadata={"env": "CONNECTOR_BODY_TIMEOUT_SECONDS"}
    )
    connector_keepalive_timeout_seconds: float = field(
        default=30.0, metadata={"env": "CONNECTOR_KEEPALIVE_TIMEOUT_SECONDS"}
    )
    connector_max_connections: int = field(
        default=512, metadata={"env": "CONNECTOR_MAX_CONNECTIONS"}
    )
    worker_host: str = field(default="127.0.0.1", metadata={"env": "WORKER_WEB_HOST"})
    worker_web_port: int = field(default=6066, metadata={"env": "WORKER_WEB_PORT"})
    worker_api_token: str | None = field(default=None, metadata={"env": "WORKER_API_TOKEN"})
    worker_cors_origin: str | None = field(default=None, metadata={"env": "WORKER_CORS_ORIGIN"})
    timezone: str = field(default="UTC", metadata={"env": "ENGAGE_TIMEZONE"})
    topic_partitions: int = field(default=8, metadata={"env": "ENGAGE_TOPIC_PARTITIONS"})
    topic_replication: int = field(default=1, metadata={"env": "ENGAGE_TOPIC_REPLICATION"})
    store: str = field(default="rocksdb://", metadata={"env": "ENGAGE_STORE"})
    data_dir: str = field(default=".engage-streams", metadata={"env": "ENGAGE_DATA_DIR"})
    app_id: str = field(default="engage-streams", metadata={"env": "ENGAGE_APP_ID"})
    reorder_window_seconds: float = field(
        default=10.0, metadata={"env": "ENGAGE_REORDER_WINDOW_SECONDS"}
    )
    thread_idle_horizon_seconds: float = field(
        default=7 * 24 * 3600.0, metadata={"env": "ENGAGE_THREAD_IDLE_HORIZON_SECONDS"}
    )
    sla_config: str | None = field(default=None, metadata={"env": "ENGAGE_SLA_CONFIG"})
    scoring_config: str | None = field(default=None, metadata={"env": "ENGAGE_SCORING_CONFIG"})
    agents_config: str | None = field(default=None, metadata={"env": "ENGAGE_AGENTS_CONFIG"})
    leaderboard_top_n: int = field(default=20, metadata={"env": "ENGAGE_LEADERBOARD_TOP_N"})
    engage_api_url: str | None = field(default=None, metadata={"env": "ENGAGE_API_URL"})
    engage_api_token: str | None = field(default=None, metadata={"env": "ENGAGE_API_TOKEN"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``environ`` (default ``os.environ``); unset variables keep defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(name, raw, f.default)
        return cls(**values)

    def describe(self) -> dict[str, str]:
        """Variable -> value for ``--help`` and start-up logs, secrets masked."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            secret = "secret" in f.name or "token" in f.name
            out[f.metadata["env"]] = "***" if (secret and value) else str(value)
        return out


def _parse(name: str, raw: str, default: object) -> object:
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be 1 or 0 (got {raw!r})")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number (got {raw!r})") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number (got {raw!r})") from None
    return raw
