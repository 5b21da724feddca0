"""``engage-streams demo``: the whole product on one machine, for a first look.

Responsible for starting, in order, the local Kafka broker (unless one already runs on the
port), the topics, the simulator's fake RingCentral platform API, the connector, one worker,
the traffic simulator and Prometheus -- each of them (Prometheus when installed) -- printing
where to look, and stopping everything it started, in reverse order, on Ctrl-C or SIGTERM.
It computes nothing itself.

The platform path runs for real: the fake platform API (``python -m simulator.platform_api``:
OAuth JWT grant, contents, identities, subscriptions) on 127.0.0.1, the connector pointed at
it (``RINGCENTRAL_SERVER_URL`` and the credentials the fake accepts, ``RINGCENTRAL_WEBHOOK_URL``
so it keeps a subscription there), and the simulator sending part of the traffic as platform
notifications -- nested, flat and thin, the thin ones resolved by the connector through the
fake -- after handing each content to the fake. Agents answering through the platform carry
their RingCentral extension id (``rc_user_id`` in the demo directory, and the fake's
identities), which the connector maps to the same agent as on the classic webhook.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

from devkit.broker import KafkaConfig, LocalKafka, LocalKafkaError, default_data_dir
from engage_streams.settings import Settings
from engage_streams.topics import TopicError, ensure_topics

DEMO_SECRET = "demo-secret"  # noqa: S105 - the demo's published, throwaway secret
DATA = Path(__file__).resolve().parent / "data"
SAMPLE = DATA / "samples" / "classic-customer-message.json"
ALERT_RULES = DATA / "prometheus" / "alerts.yml"
DEMO_DEFAULTS = {
    "ENGAGE_AGENTS_CONFIG": str(DATA / "demo-directory.json"),
    "ENGAGE_REORDER_WINDOW_SECONDS": "2",
    "RINGCENTRAL_VERIFICATION_TOKEN": "demo-rc-token",
}
"""Settings the demo gives its parts unless the environment sets them."""
"""Package data (``prometheus/alerts.yml`` of the repository), so an installed wheel runs it."""
#: The credentials the demo's fake platform API is started with (and accepts): throwaway.
DEMO_PLATFORM_CREDENTIALS = {
    "RINGCENTRAL_CLIENT_ID": "demo-client-id",
    "RINGCENTRAL_CLIENT_SECRET": "demo-client-secret",
    "RINGCENTRAL_JWT": "demo-jwt",
}
#: Share of the simulated events sent as platform notifications (the rest: classic webhook).
DEMO_PLATFORM_SHARE = "0.3"


class DemoError(RuntimeError):
    """A part of the demo could not start; the message says which and why."""


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    url: str


@dataclass
class _Demo:
    settings: Settings
    env: dict[str, str]
    log_dir: Path
    children: list[_Child] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def spawn(self, name: str, argv: list[str], url: str) -> _Child:
        log = (self.log_dir / f"{name}.log").open("ab")
        try:
            process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only the demo, which stops them in order
            )
        finally:
            log.close()
        child = _Child(name, process, url)
        self.children.append(child)
        print(f"  {name}: pid {process.pid}, log {self.log_dir / (name + '.log')}", flush=True)
        return child

    def wait_http(self, child: _Child, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping.is_set():
            code = child.process.poll()
            if code is not None:
                raise DemoError(
                    f"{child.name} exited with code {code}; see {self.log_dir / child.name}.log"
                )
            if _http_ok(url):
                return
            self.stopping.wait(0.3)
        if not self.stopping.is_set():
            raise DemoError(f"{child.name} did not answer {url} within {timeout:.0f} s")

    def stop_children(self) -> None:
        for child in reversed(self.children):
            if child.process.poll() is None:
                os.killpg(child.process.pid, signal.SIGTERM)
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait(timeout=10)
            print(f"  stopped {child.name} (exit {child.process.returncode})", flush=True)


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Start everything, print the URLs, wait for Ctrl-C/SIGTERM, stop what was started."""
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
    port = args.kafka_port if args.kafka_port is not None else settings.kafka_port
    secret_given = settings.webhook_secret is not None
    settings = replace(
        settings,
        kafka_bootstrap_servers=f"127.0.0.1:{port}",
        webhook_secret=settings.webhook_secret or DEMO_SECRET,
    )
    platform_api = f"http://127.0.0.1:{args.platform_api_port}"
    env = {
        # What makes the demo lively, unless the user set it: named agents, teams and channels
        # (the simulator's ids), a short reorder window, platform notifications too.
        **DEMO_DEFAULTS,
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "ENGAGE_WEBHOOK_SECRET": settings.webhook_secret or DEMO_SECRET,
        # Always the demo's own fake platform API: the contents the simulator notifies are
        # there, and nowhere else (a real RINGCENTRAL_* account of the environment is not used).
        "RINGCENTRAL_SERVER_URL": platform_api,
        **DEMO_PLATFORM_CREDENTIALS,
        "RINGCENTRAL_WEBHOOK_URL": (
            f"http://{settings.connector_host}:{settings.connector_port}/webhooks/ringcentral"
        ),
    }
    log_dir = data_dir.parent / "demo-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    demo = _Demo(settings, env, log_dir)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        demo.stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    kafka = LocalKafka(KafkaConfig(data_dir=data_dir, port=port))
    started_kafka = False
    try:
        if kafka.status().running:
            print(f"Using the running broker: {kafka.status()}", flush=True)
        else:
            print(f"Starting Kafka on {settings.kafka_bootstrap_servers} ({data_dir}) ...")
            kafka.start()
            started_kafka = True
        asyncio.run(ensure_topics(settings))
        _start_parts(demo, args)
        if not demo.stopping.is_set():
            _print_ready(demo, secret_given)
        while not demo.stopping.wait(0.5):
            for child in demo.children:
                if child.process.poll() is not None:
                    print(f"{child.name} exited (code {child.process.returncode}); stopping")
                    demo.stopping.set()
        return 0 if all(c.process.poll() is None for c in demo.children) else 1
    except (DemoError, LocalKafkaError, TopicError) as exc:
        print(f"engage-streams demo: {exc}", file=sys.stderr)
        return 1
    finally:
        print("Stopping ...", flush=True)
        demo.stop_children()
        if started_kafka:
            kafka.stop()
            print("  stopped kafka", flush=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _start_parts(demo: _Demo, args: argparse.Namespace) -> None:
    s = demo.settings
    cli = [sys.executable, "-m", "engage_streams.cli"]
    _require_free(args.platform_api_port, "--platform-api-port")
    _require_free(s.connector_port, "CONNECTOR_PORT")
    platform_api = demo.env["RINGCENTRAL_SERVER_URL"]
    fake = demo.spawn(
        "platform-api",
        [
            *[sys.executable, "-m", "simulator.platform_api"],
            *["--port", str(args.platform_api_port), "--agents", demo.env["ENGAGE_AGENTS_CONFIG"]],
            *["--client-id", demo.env["RINGCENTRAL_CLIENT_ID"]],
            *["--client-secret", demo.env["RINGCENTRAL_CLIENT_SECRET"]],
            *["--jwt", demo.env["RINGCENTRAL_JWT"]],
        ],
        f"{platform_api} (fake RingCentral platform API)",
    )
    demo.wait_http(fake, f"{platform_api}/_simulator/healthz", timeout=60)
    if demo.stopping.is_set():
        return
    base = f"http://{s.connector_host}:{s.connector_port}"
    connector = demo.spawn("connector", [*cli, "connector"], f"{base}/webhooks/engage")
    demo.wait_http(connector, f"{base}/readyz", timeout=60)
    if demo.stopping.is_set():
        return
    _require_free(s.worker_web_port, "WORKER_WEB_PORT")
    base = f"http://{s.worker_host}:{s.worker_web_port}"
    worker = demo.spawn("worker", [*cli, "worker"], f"{base}/wallboard")
    demo.wait_http(worker, f"{base}/metrics", timeout=180)
    if demo.stopping.is_set():
        return
    if args.no_simulator:
        print("  simulator: off (--no-simulator)")
    else:
        demo.spawn(
            "simulator",
            [
                *[*cli, "simulate", "--", "--threads", "120"],
                *["--platform-share", DEMO_PLATFORM_SHARE, "--platform-api", platform_api],
            ],
            "",
        )
    prometheus = shutil.which("prometheus")
    if prometheus:
        _require_free(args.prometheus_port, "--prometheus-port")
        address = f"127.0.0.1:{args.prometheus_port}"
        config = demo.log_dir / "prometheus.yml"
        config.write_text(prometheus_config(s))
        child = demo.spawn(
            "prometheus",
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={demo.log_dir.parent / 'prometheus'}",
                f"--web.listen-address={address}",
            ],
            f"http://{address}",
        )
        demo.wait_http(child, f"http://{address}/-/ready", timeout=60)
    else:
        print("  prometheus: not installed, skipped")


def prometheus_config(settings: Settings) -> str:
    """Prometheus scraping the demo's connector and worker, with the product's alert rules."""
    return (
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n"
        f"rule_files:\n  - {ALERT_RULES}\n"
        "scrape_configs:\n"
        "  - job_name: engage-connector\n    static_configs:\n"
        f'      - targets: ["{settings.connector_host}:{settings.connector_port}"]\n'
        "  - job_name: engage-worker\n    static_configs:\n"
        f'      - targets: ["{settings.worker_host}:{settings.worker_web_port}"]\n'
    )


def _print_ready(demo: _Demo, secret_given: bool) -> None:
    s = demo.settings
    print("\nEngage Streams demo is ready.")
    print(f"  kafka:      {s.kafka_bootstrap_servers}")
    for child in demo.children:
        if child.url:
            print(f"  {child.name + ':':<11} {child.url}")
    secret = '"$ENGAGE_WEBHOOK_SECRET"' if secret_given else DEMO_SECRET
    url = f"http://{s.connector_host}:{s.connector_port}/webhooks/engage"
    print("\nSend a customer message:")
    print(
        f"  curl -fsS -X POST {url} -H 'Content-Type: application/json' "
        f"-H X-Dimelo-Secret:{secret} --data-binary @{SAMPLE}"
    )
    print("\nCtrl-C stops everything.", flush=True)


def _require_free(port: int, setting: str) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise DemoError(f"port {port} is in use; set {setting} to a free port")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own http URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
