"""Every setting of the product, with its default, read from the environment once.

One object (``Settings``) holds the defaults named in ``shared/CONTRACT.md``; commands build
it with ``Settings.from_env()`` and may override fields from CLI flags with
``dataclasses.replace``. A bad value raises ``SettingsError`` naming the variable to fix.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engage_streams.loops import EVENT_LOOPS

DEFAULT_KAFKA_PORT = 9092
"""Kafka's own default port: of ``KAFKA_BOOTSTRAP_SERVERS`` and of the local broker."""


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """All settings; field ``x_y`` is read from the environment variable in ``metadata``."""

    kafka_bootstrap_servers: str = field(
        default=f"127.0.0.1:{DEFAULT_KAFKA_PORT}",
        metadata={"env": "KAFKA_BOOTSTRAP_SERVERS", "help": "Kafka brokers (host:port,...)"},
    )
    topic: str = field(
        default="engage.contents",
        metadata={"env": "ENGAGE_TOPIC", "help": "canonical events topic (key: thread id)"},
    )
    dlq_topic: str = field(
        default="engage.contents.dlq",
        metadata={
            "env": "ENGAGE_DLQ_TOPIC",
            "help": "authentic deliveries that could not be understood",
        },
    )
    unresolved_topic: str = field(
        default="engage.unresolved",
        metadata={
            "env": "ENGAGE_UNRESOLVED_TOPIC",
            "help": "thin platform notifications waiting to be resolved (key: content id)",
        },
    )
    resolver_group: str = field(
        default="engage-streams-resolver",
        metadata={
            "env": "ENGAGE_RESOLVER_GROUP",
            "help": "consumer group of the connectors' resolvers",
        },
    )
    resolver_attempts: int = field(
        default=8,
        metadata={
            "env": "ENGAGE_RESOLVER_ATTEMPTS",
            "help": "content fetches before a thin notification is dead-lettered",
        },
    )
    resolver_initial_delay_seconds: float = field(
        default=1.0,
        metadata={
            "env": "ENGAGE_RESOLVER_INITIAL_DELAY_SECONDS",
            "help": "first wait between content fetches (doubles each time)",
        },
    )
    resolver_max_delay_seconds: float = field(
        default=60.0,
        metadata={
            "env": "ENGAGE_RESOLVER_MAX_DELAY_SECONDS",
            "help": "longest wait between content fetches",
        },
    )
    resolver_concurrency: int = field(
        default=16,
        metadata={
            "env": "ENGAGE_RESOLVER_CONCURRENCY",
            "help": "contents one connector fetches at once",
        },
    )
    activity_topic: str = field(
        default="engage.agent-activity",
        metadata={
            "env": "ENGAGE_ACTIVITY_TOPIC",
            "help": "agent activity (one per agent content, key: agent id)",
        },
    )
    summary_topic: str = field(
        default="engage.partition-summaries",
        metadata={
            "env": "ENGAGE_SUMMARY_TOPIC",
            "help": "per-partition channel figures (compacted, key: partition)",
        },
    )
    waiting_topic: str = field(
        default="engage.waiting-runs",
        metadata={
            "env": "ENGAGE_WAITING_TOPIC",
            "help": "when customers of each thread waited, for the cleared_backlog badge "
            "(compacted, key: thread id + start)",
        },
    )
    connector_host: str = field(
        default="127.0.0.1",
        metadata={"env": "CONNECTOR_HOST", "help": "address the connector listens on"},
    )
    connector_port: int = field(
        default=8080, metadata={"env": "CONNECTOR_PORT", "help": "port the connector listens on"}
    )
    webhook_secret: str | None = field(
        default=None,
        metadata={"env": "ENGAGE_WEBHOOK_SECRET", "help": "expected X-Dimelo-Secret header"},
    )
    allow_unauthenticated: bool = field(
        default=False,
        metadata={
            "env": "ENGAGE_ALLOW_UNAUTHENTICATED",
            "help": "1 = start without a webhook secret",
        },
    )
    verify_token: str | None = field(
        default=None,
        metadata={
            "env": "ENGAGE_VERIFY_TOKEN",
            "help": "expected hub.verify_token of the registration handshake",
        },
    )
    ringcentral_verification_token: str | None = field(
        default=None,
        metadata={
            "env": "RINGCENTRAL_VERIFICATION_TOKEN",
            "help": "expected Verification-Token of platform notifications",
        },
    )
    forward_body: bool = field(
        default=False,
        metadata={
            "env": "ENGAGE_FORWARD_BODY",
            "help": "1 = forward message bodies (the customer's words) to Kafka",
        },
    )
    max_body_bytes: int = field(
        default=1024 * 1024,
        metadata={
            "env": "ENGAGE_MAX_BODY_BYTES",
            "help": "largest accepted webhook body (413 above)",
        },
    )
    publish_timeout_seconds: float = field(
        default=5.0,
        metadata={
            "env": "ENGAGE_PUBLISH_TIMEOUT_SECONDS",
            "help": "how long a delivery waits for Kafka before 503",
        },
    )
    # HTTP limits of the connector (it faces the internet): see connectors/http_limits.py.
    connector_max_header_bytes: int = field(
        default=8190,
        metadata={
            "env": "CONNECTOR_MAX_HEADER_BYTES",
            "help": "longest request line or header field (431 above)",
        },
    )
    connector_max_headers: int = field(
        default=64,
        metadata={
            "env": "CONNECTOR_MAX_HEADERS",
            "help": "most header fields in one request (431 above)",
        },
    )
    connector_header_timeout_seconds: float = field(
        default=10.0,
        metadata={
            "env": "CONNECTOR_HEADER_TIMEOUT_SECONDS",
            "help": "a new connection's request headers arrive within (408)",
        },
    )
    connector_body_timeout_seconds: float = field(
        default=10.0,
        metadata={
            "env": "CONNECTOR_BODY_TIMEOUT_SECONDS",
            "help": "a request body arrives completely within (408)",
        },
    )
    connector_keepalive_timeout_seconds: float = field(
        default=30.0,
        metadata={
            "env": "CONNECTOR_KEEPALIVE_TIMEOUT_SECONDS",
            "help": "an idle kept-alive connection is closed after",
        },
    )
    connector_max_connections: int = field(
        default=512,
        metadata={
            "env": "CONNECTOR_MAX_CONNECTIONS",
            "help": "open connections at most; more are answered 503 and closed",
        },
    )
    worker_host: str = field(
        default="127.0.0.1",
        metadata={"env": "WORKER_WEB_HOST", "help": "address of the worker's HTTP server"},
    )
    worker_web_port: int = field(
        default=6066,
        metadata={
            "env": "WORKER_WEB_PORT",
            "help": "worker HTTP port: leaderboard API, wallboard, /metrics",
        },
    )
    worker_api_token: str | None = field(
        default=None,
        metadata={
            "env": "WORKER_API_TOKEN",
            "help": "bearer token of the worker API, wallboard, /metrics (unset = open)",
        },
    )
    worker_cors_origin: str | None = field(
        default=None,
        metadata={
            "env": "WORKER_CORS_ORIGIN",
            "help": "browser origin allowed to call the worker API (unset = no CORS)",
        },
    )
    timezone: str = field(
        default="UTC",
        metadata={"env": "ENGAGE_TIMEZONE", "help": 'where "today" and "this week" begin'},
    )
    topic_partitions: int = field(
        default=8,
        metadata={
            "env": "ENGAGE_TOPIC_PARTITIONS",
            "help": "partitions of the events topic when it is created",
        },
    )
    topic_replication: int = field(
        default=1,
        metadata={
            "env": "ENGAGE_TOPIC_REPLICATION",
            "help": "replication factor of topics created",
        },
    )
    store: str = field(
        default="rocksdb://",
        metadata={
            "env": "ENGAGE_STORE",
            "help": "table store of the worker (rocksdb:// or memory://)",
        },
    )
    event_loop: str = field(
        default="uvloop",
        metadata={
            "env": "ENGAGE_EVENT_LOOP",
            "help": "event loop of the connector and the worker (uvloop or asyncio)",
        },
    )
    data_dir: str = field(
        default=".engage-streams",
        metadata={
            "env": "ENGAGE_DATA_DIR",
            "help": "worker state; the local broker lives in <dir>/kafka",
        },
    )
    app_id: str = field(
        default="engage-streams",
        metadata={
            "env": "ENGAGE_APP_ID",
            "help": "Kafka consumer group and changelog prefix of the workers",
        },
    )
    reorder_window_seconds: float = field(
        default=10.0,
        metadata={
            "env": "ENGAGE_REORDER_WINDOW_SECONDS",
            "help": "out-of-order contents within this are reordered",
        },
    )
    thread_idle_horizon_seconds: float = field(
        default=7 * 24 * 3600.0,
        metadata={
            "env": "ENGAGE_THREAD_IDLE_HORIZON_SECONDS",
            "help": "threads idle longer than this are forgotten",
        },
    )
    # About 1 KB of memory per cached state: at 200,000 a worker of 4 partitions held ~0.8 GB
    # of them at 1 M threads. A read past the cache is one RocksDB get and a msgpack decode.
    thread_cache_size: int = field(
        default=25_000,
        metadata={
            "env": "ENGAGE_THREAD_CACHE_SIZE",
            "help": "thread states kept in memory per partition beyond those not yet flushed",
        },
    )
    sla_config: str | None = field(
        default=None,
        metadata={"env": "ENGAGE_SLA_CONFIG", "help": "JSON file: SLA seconds per source"},
    )
    scoring_config: str | None = field(
        default=None,
        metadata={"env": "ENGAGE_SCORING_CONFIG", "help": "file of gamification scoring rules"},
    )
    agents_config: str | None = field(
        default=None,
        metadata={
            "env": "ENGAGE_AGENTS_CONFIG",
            "help": "file of agents (names, teams, RingCentral extension ids)",
        },
    )
    leaderboard_top_n: int = field(
        default=20,
        metadata={
            "env": "ENGAGE_LEADERBOARD_TOP_N",
            "help": "agents exported per leaderboard window",
        },
    )
    worker_max_poll_records: int = field(
        default=10_000,
        metadata={
            "env": "ENGAGE_WORKER_MAX_POLL_RECORDS",
            "help": "most records a worker fetches at once (contents, and changelog in recovery)",
        },
    )
    engage_api_url: str | None = field(
        default=None,
        metadata={
            "env": "ENGAGE_API_URL",
            "help": "Engage REST API base URL (backfill, enrichment)",
        },
    )
    engage_api_token: str | None = field(
        default=None,
        metadata={
            "env": "ENGAGE_API_TOKEN",
            "help": "Engage REST API bearer token",
        },
    )
    ringcentral_server_url: str = field(
        default="https://platform.ringcentral.com",
        metadata={
            "env": "RINGCENTRAL_SERVER_URL",
            "help": "RingCentral platform API (Advanced / Social Messaging)",
        },
    )
    ringcentral_client_id: str | None = field(
        default=None,
        metadata={"env": "RINGCENTRAL_CLIENT_ID", "help": "the platform app's client id"},
    )
    ringcentral_client_secret: str | None = field(
        default=None,
        metadata={"env": "RINGCENTRAL_CLIENT_SECRET", "help": "the platform app's client secret"},
    )
    ringcentral_jwt: str | None = field(
        default=None,
        metadata={"env": "RINGCENTRAL_JWT", "help": "JWT credential of the JWT grant"},
    )
    ringcentral_webhook_url: str | None = field(
        default=None,
        metadata={
            "env": "RINGCENTRAL_WEBHOOK_URL",
            "help": "public URL of the connector's /webhooks/ringcentral (subscription address)",
        },
    )
    backfill_checkpoint: str | None = field(
        default=None,
        metadata={
            "env": "ENGAGE_BACKFILL_CHECKPOINT",
            "help": "backfill checkpoint file (default under <ENGAGE_DATA_DIR>/backfill/)",
        },
    )

    @property
    def kafka_port(self) -> int:
        """The port of the first bootstrap server (``DEFAULT_KAFKA_PORT`` when it names none)."""
        _, _, port = self.kafka_bootstrap_servers.split(",")[0].rpartition(":")
        return int(port) if port.isdigit() else DEFAULT_KAFKA_PORT

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

    def check(self, variables: Collection[str] | None = None) -> None:
        """Raise ``SettingsError`` (one line naming the variable) for the first value of
        ``variables`` (default: all) that cannot work: an unknown time zone, a port or a
        count out of range, a store we do not have, a config file that cannot be read.

        What a config file *says* is checked by the part that reads it (the worker)."""
        wanted = None if variables is None else set(variables)
        for f in fields(self):
            name = f.metadata["env"]
            if wanted is not None and name not in wanted:
                continue
            value = getattr(self, f.name)
            check = _CHECKS.get(f.name)
            if check is not None and value is not None:
                problem = check(value)
                if problem:
                    raise SettingsError(f"{name}={value}: {problem}")

    def to_env(self) -> dict[str, str]:
        """The environment variables that give these settings to a child process.

        The inverse of ``from_env`` (unset values are left out), for the tests, the demo and
        benchmarks that start parts as processes.
        """
        env: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            env[f.metadata["env"]] = (
                ("1" if value else "0") if isinstance(value, bool) else str(value)
            )
        return env

    def describe(self) -> dict[str, str]:
        """Variable -> value for ``--help`` and start-up logs, secrets masked."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.metadata["env"]] = "***" if (is_secret(f.name) and value) else str(value)
        return out

    def __repr__(self) -> str:
        # Settings end up in tracebacks and debug logs: never show a secret there.
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            shown.append(f"{f.name}={'***' if is_secret(f.name) and value else repr(value)}")
        return f"Settings({', '.join(shown)})"


def is_secret(field_name: str) -> bool:
    """True for settings holding a credential (secrets, tokens, the JWT): masked everywhere."""
    return any(word in field_name for word in ("secret", "token", "jwt"))


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


def _timezone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "not a time zone (an IANA name such as UTC or Europe/Paris)"
    return None


def _port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else "not a port (1..65535)"


def _at_least(minimum: float) -> Callable[[float], str | None]:
    def check(value: float) -> str | None:
        return None if value >= minimum else f"must be at least {minimum:g}"

    return check


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be more than 0"


def _readable_file(value: str) -> str | None:
    path = Path(value).expanduser()
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a file"
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return None


def _writable_dir(value: str) -> str | None:
    """A directory we can create files in, or can create (its nearest existing parent is a
    writable directory)."""
    path = Path(value).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def _bootstrap(value: str) -> str | None:
    servers = [server.strip() for server in value.split(",") if server.strip()]
    if not servers:
        return "names no broker (host:port,...)"
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            return f"{server!r} is not host:port"
    return None


def _event_loop(value: str) -> str | None:
    return None if value in EVENT_LOOPS else f"must be one of {', '.join(EVENT_LOOPS)}"


def _store(value: str) -> str | None:
    if value.startswith(("rocksdb://", "memory://")):
        return None
    return "must be rocksdb:// or memory://"


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "kafka_bootstrap_servers": _bootstrap,
    "connector_port": _port,
    "worker_web_port": _port,
    "timezone": _timezone,
    "topic_partitions": _at_least(1),
    "topic_replication": _at_least(1),
    "max_body_bytes": _at_least(1),
    "publish_timeout_seconds": _positive,
    "reorder_window_seconds": _at_least(0),
    "thread_idle_horizon_seconds": _positive,
    "thread_cache_size": _at_least(0),
    "leaderboard_top_n": _at_least(1),
    "store": _store,
    "event_loop": _event_loop,
    "sla_config": _readable_file,
    "scoring_config": _readable_file,
    "agents_config": _readable_file,
    "data_dir": _writable_dir,
}
