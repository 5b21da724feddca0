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

_KAFKA = ["KAFKA_BOOTSTRAP_SERVERS", "ENGAGE_TOPIC", "ENGAGE_DLQ_TOPIC"]
_PLATFORM = [
    "RINGCENTRAL_SERVER_URL",
    "RINGCENTRAL_CLIENT_ID",
    "RINGCENTRAL_CLIENT_SECRET",
    "RINGCENTRAL_JWT",
]
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
    "RINGCENTRAL_WEBHOOK_URL",
    "ENGAGE_FORWARD_BODY",
    "ENGAGE_MAX_BODY_BYTES",
    "ENGAGE_PUBLISH_TIMEOUT_SECONDS",
    "ENGAGE_UNRESOLVED_TOPIC",
    "ENGAGE_RESOLVER_GROUP",
    "ENGAGE_RESOLVER_ATTEMPTS",
    "ENGAGE_RESOLVER_INITIAL_DELAY_SECONDS",
    "ENGAGE_RESOLVER_MAX_DELAY_SECONDS",
    "ENGAGE_RESOLVER_CONCURRENCY",
    "ENGAGE_API_URL",
    "ENGAGE_API_TOKEN",
    *_PLATFORM,
    "ENGAGE_AGENTS_CONFIG",
    "CONNECTOR_MAX_HEADER_BYTES",
    "CONNECTOR_MAX_HEADERS",
    "CONNECTOR_HEADER_TIMEOUT_SECONDS",
    "CONNECTOR_BODY_TIMEOUT_SECONDS",
    "CONNECTOR_KEEPALIVE_TIMEOUT_SECONDS",
    "CONNECTOR_MAX_CONNECTIONS",
    "ENGAGE_EVENT_LOOP",
]
_WORKER = [
    "KAFKA_BOOTSTRAP_SERVERS",
    "ENGAGE_TOPIC",
    "ENGAGE_ACTIVITY_TOPIC",
    "ENGAGE_SUMMARY_TOPIC",
    "ENGAGE_WAITING_TOPIC",
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
    "ENGAGE_THREAD_CACHE_SIZE",
    "ENGAGE_SLA_CONFIG",
    "ENGAGE_SCORING_CONFIG",
    "ENGAGE_AGENTS_CONFIG",
    "ENGAGE_LEADERBOARD_TOP_N",
    "ENGAGE_EVENT_LOOP",
]
COMMAND_SETTINGS: dict[str, list[str]] = {
    "kafka": ["KAFKA_BOOTSTRAP_SERVERS", "ENGAGE_DATA_DIR"],
    "connector": _CONNECTOR,
    "worker": _WORKER,
    "simulate": [
        "CONNECTOR_HOST",
        "CONNECTOR_PORT",
        "ENGAGE_WEBHOOK_SECRET",
        "RINGCENTRAL_VERIFICATION_TOKEN",
        "ENGAGE_AGENTS_CONFIG",
    ],
    "backfill": [
        *_KAFKA,
        *_TOPICS,
        "ENGAGE_API_URL",
        "ENGAGE_API_TOKEN",
        *_PLATFORM,
        "ENGAGE_AGENTS_CONFIG",
        "ENGAGE_FORWARD_BODY",
        "ENGAGE_DATA_DIR",
        "ENGAGE_BACKFILL_CHECKPOINT",
    ],
    "subscribe": [*_PLATFORM, "RINGCENTRAL_WEBHOOK_URL", "RINGCENTRAL_VERIFICATION_TOKEN"],
    "demo": sorted(set(_CONNECTOR) | set(_WORKER)),
}
"""Which settings each subcommand uses; settings named nowhere are listed under every one."""


def settings_help(command: str) -> str:
    """The ``--help`` epilog of ``command``: its settings, their defaults and meanings."""
    defaults = {f.metadata["env"]: f.default for f in fields(Settings)}
    meanings = {f.metadata["env"]: f.metadata["help"] for f in fields(Settings)}
    named = {name for names in COMMAND_SETTINGS.values() for name in names}
    own = [name for name in COMMAND_SETTINGS[command] if name in defaults]
    others = sorted(name for name in defaults if name not in named)
    shown = {name: _shown_default(defaults[name]) for name in own + others}
    width = max(len(name) for name in shown) + 2
    dwidth = max(len(value) for value in shown.values()) + 2
    rows = [f"  {'variable':<{width}}{'default':<{dwidth}}meaning"]
    for name, value in shown.items():
        rows.append(f"  {name:<{width}}{value:<{dwidth}}{meanings.get(name, '')}".rstrip())
    return "settings (environment variables):\n" + "\n".join(rows)


def _shown_default(default: object) -> str:
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return "1" if default else "0"
    return str(default)


def _kafka_port(settings: Settings) -> int:
    return settings.kafka_port


# -- handlers --------------------------------------------------------------------------
def _cmd_kafka(settings: Settings, args: argparse.Namespace) -> int:
    from devkit.broker import (
        KafkaAlreadyRunning,
        KafkaConfig,
        LocalKafka,
        LocalKafkaError,
        default_data_dir,
    )
    from devkit.jars import JarsError, ensure_jars

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
    except (LocalKafkaError, JarsError) as exc:
        print(f"engage-streams kafka {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from devkit.demo import run_demo

    return run_demo(settings, args)


def _dispatch(target: str) -> Callable[[Settings, argparse.Namespace], int]:
    """A handler calling ``module:function`` (imported only now) with the settings."""

    def handler(settings: Settings, args: argparse.Namespace) -> int:
        module_name, _, function_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
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
        if getattr(args, "redrive_dlq", False):
            extra = ["--redrive-dlq", *extra]
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
        "--port", type=int, help="broker port (default: the port of KAFKA_BOOTSTRAP_SERVERS)"
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
            "streams.worker.command:main",
            "one stream-processing worker (metrics, leaderboards, API)",
            "Runs one stream-processing worker (the Faust app streams.app:app) in this "
            "process: response times, backlog, leaderboards, the HTTP API, the wallboard "
            "and /metrics.",
        ),
        "simulate": (
            "simulator.simulate:main",
            "send realistic contact-center traffic to a connector",
            "Sends realistic contact-center traffic (customers, agents, channels) as "
            "webhooks to a running connector.",
        ),
        "backfill": (
            "connectors.backfill:main",
            "publish past contents from the Engage or RingCentral platform API",
            "Reads past contents from the classic Engage REST API or the RingCentral platform "
            "API (--api classic|platform, --since, --until) and publishes them like webhooks, "
            "with a progress bar and a checkpoint: a second run publishes nothing the first "
            "did, an interrupted run resumes.",
        ),
        "subscribe": (
            "connectors.subscription:main",
            "manage the RingCentral platform webhook subscription (create, list, renew, delete)",
            "Creates, lists, renews or deletes the RingCentral platform webhook subscription "
            "for Advanced Messaging contents (Imported, Exported, DiscussionInitiated) that "
            "delivers to the connector's /webhooks/ringcentral.",
        ),
    }
    for name, (target, summary, description) in delegated.items():
        if name != "worker":
            description += (
                f" Arguments after `--` go to the {name} itself "
                f"(`engage-streams {name} -- --help` lists them)."
            )
        sub = add(name, summary, description)
        if name == "connector":
            sub.add_argument(
                "--redrive-dlq",
                action="store_true",
                help="queue the unresolved_content dead letters again for the resolvers "
                "(on the unresolved topic), then exit",
            )
        sub.add_argument("extra", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        sub.set_defaults(handler=_dispatch(target))

    demo = add(
        "demo",
        "run the whole thing on this machine",
        "Runs everything on one machine: the local Kafka broker, a fake RingCentral platform "
        "API, the connector (secret `demo-secret`, pointed at the fake), one stream worker, "
        "the traffic simulator (classic webhooks and platform notifications: nested, flat, "
        "thin) and Prometheus when it is installed; prints the URLs and a curl command to "
        "try. Ctrl-C stops all it started.",
    )
    demo.add_argument("--data-dir", help="broker data (default as for `kafka start`)")
    demo.add_argument(
        "--kafka-port", type=int, help="broker port (default: the port of KAFKA_BOOTSTRAP_SERVERS)"
    )
    demo.add_argument(
        "--prometheus-port", type=int, default=9090, help="Prometheus web port (default: 9090)"
    )
    demo.add_argument(
        "--platform-api-port",
        type=int,
        default=8090,
        help="port of the fake RingCentral platform API on 127.0.0.1 (default: 8090)",
    )
    demo.add_argument("--no-simulator", action="store_true", help="do not send simulated traffic")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def check_settings(command: str, settings: Settings) -> None:
    """Fail fast, naming the variable, on a setting ``command`` uses that cannot work.

    The demo runs a worker: its config files are loaded here too (the worker's own check,
    imported only now), so the demo does not start half a stack first.
    """
    named = {name for names in COMMAND_SETTINGS.values() for name in names}
    unnamed = {f.metadata["env"] for f in fields(Settings)} - named
    settings.check(set(COMMAND_SETTINGS[command]) | unnamed)
    if command == "demo":
        try:
            worker_command = importlib.import_module("streams.worker.command")
        except ModuleNotFoundError:
            return  # the dispatcher reports the missing part
        worker_command.check_config(settings)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if not hasattr(args, "extra"):
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        # argparse's REMAINDER stops at a leading option (`backfill --api platform`): hand
        # everything after the subcommand to it, as written.
        args.extra = argv[argv.index(args.command) + 1 :]
    try:
        settings = Settings.from_env()
        check_settings(args.command, settings)
        handler: Callable[[Settings, argparse.Namespace], int] = args.handler
        return handler(settings, args)
    except SettingsError as exc:
        print(f"engage-streams {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
