"""The ``engage-streams`` command: one entry point, one subcommand per process kind.

Responsible for parsing the command line, building ``Settings`` from the environment, listing
each subcommand's settings in its ``--help`` and handing over to the module that does the work.
The connector, worker, simulator and backfill live in other packages and are imported only
when their subcommand runs, so ``--help`` and ``kafka`` stay fast and a missing part gives a
clear message instead of a traceback. Exit codes: 0 ok, 1 failed, 2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path

from engage_streams import __version__
from engage_streams.settings import Settings, SettingsError

SETTING_MEANINGS: dict[str, str] = {
    "KAFKA_BOOTSTRAP_SERVERS": "Kafka brokers (host:port,...)",
    "ENGAGE_TOPIC": "canonical events topic (key: thread id)",
    "ENGAGE_DLQ_TOPIC": "authentic deliveries that could not be understood",
    "ENGAGE_ACTIVITY_TOPIC": "agent activity (one per agent content, key: agent id)",
    "ENGAGE_SUMMARY_TOPIC": "per-partition channel figures (compacted, key: partition)",
    "CONNECTOR_HOST": "address the connector listens on",
    "CONNECTOR_PORT": "port the connector listens on",
    "ENGAGE_WEBHOOK_SECRET": "expected X-Dimelo-Secret header",
    "ENGAGE_ALLOW_UNAUTHENTICATED": "1 = start without a webhook secret",
    "ENGAGE_VERIFY_TOKEN": "expected hub.verify_token of the registration handshake",
    "RINGCENTRAL_VERIFICATION_TOKEN": "expected Verification-Token of platform notifications",
    "ENGAGE_FORWARD_BODY": "1 = forward message bodies (the customer's words) to Kafka",
    "ENGAGE_MAX_BODY_BYTES": "largest accepted webhook body (413 above)",
    "ENGAGE_PUBLISH_TIMEOUT_SECONDS": "how long a delivery waits for Kafka before 503",
    "CONNECTOR_MAX_HEADER_BYTES": "longest request line or header field (431 above)",
    "CONNECTOR_MAX_HEADERS": "most header fields in one request (431 above)",
    "CONNECTOR_HEADER_TIMEOUT_SECONDS": "a new connection's request headers arrive within (408)",
    "CONNECTOR_BODY_TIMEOUT_SECONDS": "a request body arrives completely within (408)",
    "CONNECTOR_KEEPALIVE_TIMEOUT_SECONDS": "an idle kept-alive connection is closed after",
    "CONNECTOR_MAX_CONNECTIONS": "open connections at most; more are answered 503 and closed",
    "WORKER_WEB_HOST": "address of the worker's HTTP server",
    "WORKER_WEB_PORT": "worker HTTP port: leaderboard API, wallboard, /metrics",
    "WORKER_API_TOKEN": "bearer token of the worker API, wallboard, /metrics (unset = open)",
    "WORKER_CORS_ORIGIN": "browser origin allowed to call the worker API (unset = no CORS)",
    "ENGAGE_TIMEZONE": 'where "today" and "this week" begin',
    "ENGAGE_TOPIC_PARTITIONS": "partitions of the events topic when it is created",
    "ENGAGE_TOPIC_REPLICATION": "replication factor of topics created",
    "ENGAGE_STORE": "table store of the worker (rocksdb:// or memory://)",
    "ENGAGE_DATA_DIR": "worker state; the local broker lives in <dir>/kafka",
    "ENGAGE_APP_ID": "Kafka consumer group and changelog prefix of the workers",
    "ENGAGE_REORDER_WINDOW_SECONDS": "out-of-order contents within this are reordered",
    "ENGAGE_THREAD_IDLE_HORIZON_SECONDS": "threads idle longer than this are forgotten",
    "ENGAGE_SLA_CONFIG": "JSON file: SLA seconds per source",
    "ENGAGE_SCORING_CONFIG": "file of gamification scoring rules",
    "ENGAGE_AGENTS_CONFIG": "file of agents (names, teams)",
    "ENGAGE_LEADERBOARD_TOP_N": "agents exported per leaderboard window",
    "ENGAGE_API_URL": "Engage REST API base URL (backfill, enrichment)",
    "ENGAGE_API_TOKEN": "Engage REST API bearer token",
}

_KAFKA = ["KAFKA_BOOTSTRAP_SERVERS", "ENGAGE_TOPIC", "ENGAGE_DLQ_TOPIC"]
_TOPICS = ["ENGAGE_TOPIC_PARTITIONS", "ENGAGE_TOPIC_REPLICATION"]
_CONNECTOR = [
    *_KAFKA,
    *_TOPICS,
    "CONNECTOR_HOST",
    "CONNECTOR_PORT",
    "ENGAGE_WEBHOOK_SECRET",
    "ENGAGE_ALLOW_UNAUTHENTICATED",
    "ENGAGE_VERIFY_TOKEN",
    "RINGCENTRAL_VERIFICATION_TOKEN",
    "ENGAGE_FORWARD_BODY",
    "ENGAGE_MAX_BODY_BYTES",
    "ENGAGE_PUBLISH_TIMEOUT_SECONDS",
    "CONNECTOR_MAX_HEADER_BYTES",
    "CONNECTOR_MAX_HEADERS",
    "CONNECTOR_HEADER_TIMEOUT_SECONDS",
    "CONNECTOR_BODY_TIMEOUT_SECONDS",
    "CONNECTOR_KEEPALIVE_TIMEOUT_SECONDS",
    "CONNECTOR_MAX_CONNECTIONS",
]
_WORKER = [
    "KAFKA_BOOTSTRAP_SERVERS",
    "ENGAGE_TOPIC",
    "ENGAGE_ACTIVITY_TOPIC",
    "ENGAGE_SUMMARY_TOPIC",
    *_TOPICS,
    "WORKER_WEB_HOST",
    "WORKER_WEB_PORT",
    "WORKER_API_TOKEN",
    "WORKER_CORS_ORIGIN",
    "ENGAGE_TIMEZONE",
    "ENGAGE_STORE",
    "ENGAGE_DATA_DIR",
    "ENGAGE_APP_ID",
    "ENGAGE_REORDER_WINDOW_SECONDS",
    "ENGAGE_THREAD_IDLE_HORIZON_SECONDS",
    "ENGAGE_SLA_CONFIG",
    "ENGAGE_SCORING_CONFIG",
    "ENGAGE_AGENTS_CONFIG",
    "ENGAGE_LEADERBOARD_TOP_N",
]
COMMAND_SETTINGS: dict[str, list[str]] = {
    "kafka": ["KAFKA_BOOTSTRAP_SERVERS", "ENGAGE_DATA_DIR"],
    "connector": _CONNECTOR,
    "worker": _WORKER,
    "simulate": [
        "CONNECTOR_HOST",
        "CONNECTOR_PORT",
        "ENGAGE_WEBHOOK_SECRET",
        "ENGAGE_AGENTS_CONFIG",
    ],
    "backfill": [*_KAFKA, *_TOPICS, "ENGAGE_API_URL", "ENGAGE_API_TOKEN", "ENGAGE_FORWARD_BODY"],
    "demo": sorted(set(_CONNECTOR) | set(_WORKER)),
}
"""Which settings each subcommand uses; settings named nowhere are listed under every one."""


def settings_help(command: str) -> str:
    """The ``--help`` epilog of ``command``: its settings, their defaults and meanings."""
    defaults = {f.metadata["env"]: f.default for f in fields(Settings)}
    named = {name for names in COMMAND_SETTINGS.values() for name in names}
    own = [name for name in COMMAND_SETTINGS[command] if name in defaults]
    others = sorted(name for name in defaults if name not in named)
    shown = {name: _shown_default(defaults[name]) for name in own + others}
    width = max(len(name) for name in shown) + 2
    dwidth = max(len(value) for value in shown.values()) + 2
    rows = [f"  {'variable':<{width}}{'default':<{dwidth}}meaning"]
    for name, value in shown.items():
        rows.append(f"  {name:<{width}}{value:<{dwidth}}{SETTING_MEANINGS.get(name, '')}".rstrip())
    return "settings (environment variables):\n" + "\n".join(rows)


def _shown_default(default: object) -> str:
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return "1" if default else "0"
    return str(default)


def _kafka_port(settings: Settings) -> int:
    first = settings.kafka_bootstrap_servers.split(",")[0]
    _, _, port = first.rpartition(":")
    return int(port) if port.isdigit() else 9092


# -- handlers --------------------------------------------------------------------------
def _cmd_kafka(settings: Settings, args: argparse.Namespace) -> int:
    from engage_streams.localkafka import (
        KafkaAlreadyRunning,
        KafkaConfig,
        LocalKafka,
        LocalKafkaError,
        default_data_dir,
        ensure_jars,
    )

    data_dir = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
    port = args.port if args.port is not None else _kafka_port(settings)
    kafka = LocalKafka(
        KafkaConfig(data_dir=data_dir, port=port, controller_port=args.controller_port)
    )
    try:
        if args.action == "start":
            try:
                kafka.start()
            except KafkaAlreadyRunning as exc:
                print(exc)
                return 0
            print(kafka.status())
            print(f"logs: {kafka.logs_dir}/server.log")
        elif args.action == "stop":
            print("stopped" if kafka.stop() else f"was not running ({data_dir})")
        elif args.action == "status":
            status = kafka.status()
            print(status)
            return 0 if status.running else 1
        else:
            print(ensure_jars())
    except LocalKafkaError as exc:
        print(f"engage-streams kafka {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from engage_streams.demo import run_demo

    return run_demo(settings, args)


def _dispatch(target: str) -> Callable[[Settings, argparse.Namespace], int]:
    """A handler calling ``module:function`` (imported only now) with the settings."""

    def handler(settings: Settings, args: argparse.Namespace) -> int:
        module_name, _, function_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                print(
                    f"engage-streams {args.command}: not available in this build "
                    f"({module_name} is missing)",
                    file=sys.stderr,
                )
            else:
                print(
                    f"engage-streams {args.command}: missing dependency {exc.name!r}; "
                    "run scripts/install (or pip install -e .)",
                    file=sys.stderr,
                )
            return 2
        function = getattr(module, function_name)
        extra = list(args.extra)
        if extra[:1] == ["--"]:
            extra = extra[1:]
        result = function(settings) if args.command == "worker" else function(settings, extra)
        return result if isinstance(result, int) else 0

    return handler


# -- parser ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engage-streams",
        description="Real-time response metrics, backlog and gamification for RingCentral "
        "Engage Digital contact centers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=summary,
            description=description,
            epilog=settings_help(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    kafka = add(
        "kafka",
        "the local single-node Apache Kafka broker (start, stop, status)",
        "The local single-node Apache Kafka broker (KRaft) used by the demo and the tests. "
        "`start` fetches the broker's jars with Maven on first use, returns once the broker "
        "answers and leaves it running in the background; `status` exits 0 only when it runs "
        "and answers; `fetch` only downloads the jars.",
    )
    kafka.add_argument("action", choices=["start", "stop", "status", "fetch"])
    kafka.add_argument(
        "--port", type=int, help="broker port (default: the port of KAFKA_BOOTSTRAP_SERVERS, 9092)"
    )
    kafka.add_argument(
        "--controller-port",
        type=int,
        help="KRaft controller port (default: the last one used in the data dir, else a free one)",
    )
    kafka.add_argument(
        "--data-dir",
        help="broker data, logs and pid file (default: "
        "$ENGAGE_DATA_DIR/kafka, else ~/.local/share/engage-streams/kafka)",
    )
    kafka.set_defaults(handler=_cmd_kafka)

    delegated = {
        "connector": (
            "connectors.server:main",
            "the webhook receiver (Engage -> Kafka)",
            "Receives Engage Digital and RingCentral platform webhooks, checks their secret, "
            "and answers 200 only once every event is acknowledged by Kafka.",
        ),
        "worker": (
            "streams.worker:main",
            "one stream-processing worker (metrics, leaderboards, API)",
            "Runs one stream-processing worker (the Faust app streams.app:app) in this "
            "process: response times, backlog, leaderboards, the HTTP API, the wallboard "
            "and /metrics.",
        ),
        "simulate": (
            "connectors.simulate:main",
            "send realistic contact-center traffic to a connector",
            "Sends realistic contact-center traffic (customers, agents, channels) as "
            "webhooks to a running connector.",
        ),
        "backfill": (
            "connectors.backfill:main",
            "publish past contents from the Engage REST API",
            "Reads past contents from the Engage REST API and publishes them like webhooks.",
        ),
    }
    for name, (target, summary, description) in delegated.items():
        if name != "worker":
            description += (
                f" Arguments after `--` go to the {name} itself "
                f"(`engage-streams {name} -- --help` lists them)."
            )
        sub = add(name, summary, description)
        sub.add_argument("extra", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        sub.set_defaults(handler=_dispatch(target))

    demo = add(
        "demo",
        "run the whole thing on this machine",
        "Runs everything on one machine: the local Kafka broker, the connector (secret "
        "`demo-secret`), one stream worker, the traffic simulator and Prometheus when it is "
        "installed; prints the URLs and a curl command to try. Ctrl-C stops all it started.",
    )
    demo.add_argument("--data-dir", help="broker data (default as for `kafka start`)")
    demo.add_argument(
        "--kafka-port", type=int, help="broker port (default: the port of KAFKA_BOOTSTRAP_SERVERS)"
    )
    demo.add_argument(
        "--prometheus-port", type=int, default=9090, help="Prometheus web port (default: 9090)"
    )
    demo.add_argument("--no-simulator", action="store_true", help="do not send simulated traffic")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        handler: Callable[[Settings, argparse.Namespace], int] = args.handler
        return handler(settings, args)
    except SettingsError as exc:
        print(f"engage-streams {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
