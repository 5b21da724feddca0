"""The local single-node Apache Kafka broker (KRaft) used by the demo, the tests and benchmarks.

Responsible for: writing its configuration, formatting its storage once, starting it
detached (own process group, pid file in the data dir), telling whether it runs and stopping
it. The jars come from ``devkit.jars``, the readiness check from ``devkit.probe``, topics from
``engage_streams.topics``. A development broker -- one node, replication 1, bound to
127.0.0.1 -- never a production one; product code never imports this module.

Errors (all carry a message saying what to do)::

    LocalKafkaError
    ├── KafkaAlreadyRunning   start() while the broker of this data dir runs
    └── KafkaStartFailed      the broker exited or did not answer in time (log tail included)

Usage::

    kafka = LocalKafka(KafkaConfig(data_dir=Path("/tmp/k"), port=free_port()))
    kafka.start()                       # returns once the broker answers a metadata request
    kafka.create_topics({"engage.contents": 8})
    kafka.status().running              # True
    kafka.stop()
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from devkit.jars import KAFKA_DATA, KAFKA_VERSION, JarsError, default_jars_dir, ensure_jars
from devkit.ports import free_port, port_is_free
from devkit.probe import broker_answers
from engage_streams.settings import DEFAULT_KAFKA_PORT
from engage_streams.topics import TopicError, create_topics

__all__ = [
    "KAFKA_VERSION",
    "KafkaAlreadyRunning",
    "KafkaConfig",
    "KafkaStartFailed",
    "KafkaStatus",
    "LocalKafka",
    "LocalKafkaError",
    "default_data_dir",
    "free_port",
]

_T = TypeVar("_T")


class LocalKafkaError(RuntimeError):
    """The local broker cannot do what was asked; the message says why and what to do."""


class KafkaAlreadyRunning(LocalKafkaError):
    """``start()`` found the broker of this data dir already running."""


class KafkaStartFailed(LocalKafkaError):
    """The broker exited during start-up or did not answer before the deadline."""


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$ENGAGE_DATA_DIR/kafka`` when that is set, else ``~/.local/share/engage-streams/kafka``."""
    env = os.environ if environ is None else environ
    base = env.get("ENGAGE_DATA_DIR")
    if base:
        return Path(base).expanduser() / "kafka"
    return Path.home() / ".local" / "share" / "engage-streams" / "kafka"


@dataclass(frozen=True, kw_only=True)
class KafkaConfig:
    """Where and how the local broker runs.

    ``controller_port`` ``None`` means: the one this data dir used last time, else a free one.
    """

    data_dir: Path
    port: int = DEFAULT_KAFKA_PORT
    controller_port: int | None = None
    kafka_version: str = KAFKA_VERSION
    jar_cache_dir: Path | None = None
    max_heap: str = "768m"
    start_timeout_seconds: float = 120.0
    stop_timeout_seconds: float = 30.0

    @property
    def jars_dir(self) -> Path:
        if self.jar_cache_dir is not None:
            return self.jar_cache_dir
        return default_jars_dir(self.kafka_version)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class KafkaStatus:
    """What ``status()`` found: the broker runs when its process is alive AND it answers."""

    pid: int | None
    answering: bool
    bootstrap_servers: str
    data_dir: Path

    @property
    def running(self) -> bool:
        return self.pid is not None and self.answering

    def __str__(self) -> str:
        where = f"{self.bootstrap_servers} (data dir {self.data_dir})"
        if self.running:
            return f"Kafka is running (pid {self.pid}) on {where}"
        if self.pid is not None:
            return f"Kafka process {self.pid} is alive but does not answer on {where}"
        return f"Kafka is not running: {where}"


class LocalKafka:
    """One local broker, identified by its data dir (which holds its pid file and logs)."""

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self._process: subprocess.Popen[bytes] | None = None

    # -- paths -------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def bootstrap_servers(self) -> str:
        return self.config.bootstrap_servers

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the broker detached and return once it answers a metadata request."""
        pid = self._running_pid()
        if pid is not None:
            raise KafkaAlreadyRunning(f"already running: {self.status()}")
        controller_port = self._controller_port()
        for port, what in ((self.config.port, "--port"), (controller_port, "controller port")):
            if not port_is_free(port):
                raise LocalKafkaError(
                    f"port {port} on 127.0.0.1 is in use by another process; choose another "
                    f"{what} (or stop what uses it)"
                )
        try:
            jars = ensure_jars(self.config.kafka_version, self.config.jars_dir)
        except JarsError as exc:
            raise LocalKafkaError(str(exc)) from exc
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(self._server_properties(controller_port))
        self._format_storage(jars)
        out = (self.logs_dir / "kafka.out").open("ab")
        try:
            self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [*self._java(jars), "kafka.Kafka", str(self.properties_file)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.data_dir,
            )
        finally:
            out.close()
        self.pid_file.write_text(f"{self._process.pid}\n")
        try:
            self._wait_until_answering(self._process)
        except BaseException:  # interrupted (Ctrl-C, SIGTERM) or failed: leave nothing behind
            self.stop()
            raise

    def stop(self) -> bool:
        """Stop it (SIGTERM, SIGKILL after the deadline); False if it was not running."""
        pid = self._running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        if not self._wait_for_exit(pid, self.config.stop_timeout_seconds):
            _signal_group(pid, signal.SIGKILL)
            self._wait_for_exit(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)
        self._process = None
        return True

    def status(self) -> KafkaStatus:
        """The truth: the pid file's process is a live broker AND its port answers."""
        pid = self._running_pid()
        port = self._recorded_port() or self.config.port  # this data dir's broker's port
        answering = pid is not None and broker_answers("127.0.0.1", port, timeout=2.0)
        return KafkaStatus(pid, answering, f"127.0.0.1:{port}", self.data_dir)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's log (and its console output), for error messages."""
        parts = []
        for name in ("server.log", "kafka.out"):
            path = self.logs_dir / name
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts) or f"(no log in {self.logs_dir})"

    # -- topics ------------------------------------------------------------------------
    def create_topics(self, partitions_by_topic: Mapping[str, int]) -> list[str]:
        """Create the topics that do not exist yet; returns those it created. Blocking."""
        try:
            return _run_blocking(lambda: create_topics(self.bootstrap_servers, partitions_by_topic))
        except TopicError as exc:
            raise LocalKafkaError(str(exc)) from exc

    def create_topic(self, name: str, partitions: int = 1) -> None:
        self.create_topics({name: partitions})

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (None otherwise)."""
        return self._running_pid()

    # -- internals ---------------------------------------------------------------------
    def _running_pid(self) -> int | None:
        if self._process is not None and self._process.poll() is not None:
            self._process = None  # our child exited: reaped, no zombie left behind
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_broker_process(pid, self.properties_file) else None

    def _recorded_value(self, key: str) -> str | None:
        try:
            text = self.properties_file.read_text()
        except FileNotFoundError:
            return None
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip() == key:
                return value.strip()
        return None

    def _recorded_port(self) -> int | None:
        listeners = self._recorded_value("advertised.listeners") or ""
        _, _, port = listeners.rpartition(":")
        return int(port) if port.isdigit() else None

    def _controller_port(self) -> int:
        if self.config.controller_port is not None:
            return self.config.controller_port
        voters = self._recorded_value("controller.quorum.voters") or ""
        _, _, port = voters.rpartition(":")
        if port.isdigit() and int(port) != self.config.port and port_is_free(int(port)):
            return int(port)
        while True:
            port_ = free_port()
            if port_ != self.config.port:
                return port_

    def _server_properties(self, controller_port: int) -> str:
        port = self.config.port
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir / "data"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
        }
        lines = [f"{key}={value}" for key, value in settings.items()]
        return "# written by devkit.broker on each start\n" + "\n".join(lines) + "\n"

    def _java(self, jars: Path) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise LocalKafkaError("java not found: install a JRE 17+ (scripts/install does)")
        return [
            java,
            "-Xms256m",
            f"-Xmx{self.config.max_heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.logs_dir}",
            f"-Dlog4j2.configurationFile={KAFKA_DATA / 'log4j2.properties'}",
            "-cp",
            f"{jars}/*",
        ]

    def _format_storage(self, jars: Path) -> None:
        if (self.data_dir / "data" / "meta.properties").exists():
            return
        cluster_id = _new_cluster_id()
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                *self._java(jars),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(self.properties_file),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise KafkaStartFailed(
                f"formatting the storage in {self.data_dir} failed "
                f"(exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def _wait_until_answering(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.config.start_timeout_seconds
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                self.pid_file.unlink(missing_ok=True)
                self._process = None
                raise KafkaStartFailed(
                    f"the broker exited with code {code} during start-up.\n{self.log_tail()}"
                )
            if broker_answers("127.0.0.1", self.config.port, timeout=2.0):
                return
            time.sleep(0.2)
        tail = self.log_tail()
        self.stop()
        raise KafkaStartFailed(
            f"the broker did not answer on {self.bootstrap_servers} within "
            f"{self.config.start_timeout_seconds:.0f} s; stopped it.\n{tail}"
        )

    def _wait_for_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=0.2)
                if self._process.poll() is not None:
                    return True
            elif not _pid_alive(pid):
                return True
            else:
                time.sleep(0.2)
        return False


# -- processes -------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _is_broker_process(pid: int, properties_file: Path) -> bool:
    """Alive and really our broker (a recycled pid would not name our server.properties)."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot look (no /proc): trust the pid file
    return b"kafka.Kafka" in cmdline and str(properties_file).encode() in cmdline


def _signal_group(pid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pid, signum)  # started with start_new_session: group id == pid
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _new_cluster_id() -> str:
    while True:  # Kafka's Uuid never starts with "-"
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _run_blocking(make: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine to completion from sync code, also when an event loop already runs
    in this thread (async tests): it gets its own loop in a short-lived thread."""
    results: list[_T] = []
    errors: list[BaseException] = []

    async def _main() -> None:
        results.append(await make())

    def _thread() -> None:
        try:
            asyncio.run(_main())
        except BaseException as exc:  # re-raised in the caller's thread below
            errors.append(exc)

    worker = threading.Thread(target=_thread, name="localkafka-admin")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return results[0]
