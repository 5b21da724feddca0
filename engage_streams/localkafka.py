"""The local single-node Apache Kafka broker (KRaft) used by the demo and the tests.

Responsible for: fetching the broker's jars from Maven Central (``kafka/pom.xml``, cached
outside the repo in ``~/.cache/engage-streams/kafka-<version>/libs``), writing its
configuration, formatting its storage once, starting it detached (own process group, pid file
in the data dir), telling whether it runs, stopping it, and creating topics. It is a
development broker -- one node, replication 1, bound to 127.0.0.1 -- never a production one.

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
import fcntl
import hashlib
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from engage_streams.settings import Settings

KAFKA_VERSION = "4.1.1"
KAFKA_DIR = Path(__file__).resolve().parent.parent / "kafka"
"""``pom.xml`` (the broker's jars) and ``log4j2.properties`` (its logging) in the checkout."""

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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Taken below Linux's ephemeral range (32768-60999): a port the kernel hands out for
    ``bind(0)`` is soon reused as the source port of some outgoing connection (Kafka clients
    open many), and a server started on it a moment later would find it taken.
    """
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32768)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise LocalKafkaError("no free TCP port found in 20000-32767")


@dataclass(frozen=True, kw_only=True)
class KafkaConfig:
    """Where and how the local broker runs.

    ``controller_port`` ``None`` means: the one this data dir used last time, else a free one.
    """

    data_dir: Path
    port: int = 9092
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
        return Path.home() / ".cache" / "engage-streams" / f"kafka-{self.kafka_version}" / "libs"

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
            if not _port_is_free(port):
                raise LocalKafkaError(
                    f"port {port} on 127.0.0.1 is in use by another process; choose another "
                    f"{what} (or stop what uses it)"
                )
        jars = ensure_jars(self.config.kafka_version, self.config.jars_dir)
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
        return _run_blocking(lambda: create_topics(self.bootstrap_servers, partitions_by_topic))

    def create_topic(self, name: str, partitions: int = 1) -> None:
        self.create_topics({name: partitions})

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
        if port.isdigit() and int(port) != self.config.port and _port_is_free(int(port)):
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
        return "# written by engage_streams.localkafka on each start\n" + "\n".join(lines) + "\n"

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
            f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
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


# -- jars ------------------------------------------------------------------------------
def ensure_jars(version: str = KAFKA_VERSION, jars_dir: Path | None = None) -> Path:
    """The directory of the broker's jars, fetched with Maven when missing or outdated.

    A stamp (hash of ``kafka/pom.xml`` and the version) marks a complete fetch, so an
    interrupted download or a changed pom is fetched again; concurrent callers wait on a lock.
    """
    target = jars_dir or KafkaConfig(data_dir=Path(), kafka_version=version).jars_dir
    pom = KAFKA_DIR / "pom.xml"
    if not pom.exists():
        raise LocalKafkaError(f"{pom} not found: run from a checkout (pip install -e .)")
    stamp = hashlib.sha256(pom.read_bytes() + version.encode()).hexdigest()
    stamp_file = target / ".engage-streams-stamp"
    if _read(stamp_file) == stamp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".fetch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _read(stamp_file) == stamp:
            return target
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalKafkaError("mvn not found: install Maven (scripts/install does)")
        fresh = target.parent / f"{target.name}.new-{os.getpid()}"
        shutil.rmtree(fresh, ignore_errors=True)
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                mvn,
                "-B",
                "-q",
                "-Dstyle.color=never",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-Dkafka.version={version}",
                f"-DoutputDirectory={fresh}",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if result.returncode != 0 or not any(fresh.glob("kafka_2.13-*.jar")):
            shutil.rmtree(fresh, ignore_errors=True)
            raise LocalKafkaError(
                f"fetching the Kafka {version} jars with Maven failed (exit {result.returncode})"
                f":\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        (fresh / stamp_file.name).write_text(stamp)
        old = target.parent / f"{target.name}.old-{os.getpid()}"
        if target.exists():
            target.rename(old)
        fresh.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    return target


# -- topics ----------------------------------------------------------------------------
async def create_topics(
    bootstrap_servers: str,
    partitions_by_topic: Mapping[str, int],
    *,
    replication: int = 1,
    timeout_seconds: float = 30.0,
) -> list[str]:
    """Create the missing topics and wait until the broker lists them; returns those created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError, for_code

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_seconds * 1000)
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, partitions, replication)
            for name, partitions in partitions_by_topic.items()
            if name not in existing
        ]
        created: list[str] = []
        if wanted:
            response = await admin.create_topics(wanted)
            for entry in response.topic_errors:
                name, code = entry[0], entry[1]
                error = for_code(code) if code else None
                if error is None:
                    created.append(name)
                elif error is not TopicAlreadyExistsError:
                    raise LocalKafkaError(f"could not create topic {name}: {error.__name__}")
        deadline = time.monotonic() + timeout_seconds
        while not set(partitions_by_topic) <= set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise LocalKafkaError(f"topics {sorted(partitions_by_topic)} did not appear")
            await asyncio.sleep(0.1)
        return created
    finally:
        await admin.close()


async def ensure_topics(settings: Settings, extra: Mapping[str, int] | None = None) -> list[str]:
    """Create the product's topics (events and DLQ, plus ``extra``) when they are missing.

    Used at connector and worker start-up: the broker never creates topics by itself.
    """
    wanted = {settings.topic: settings.topic_partitions, settings.dlq_topic: 1, **(extra or {})}
    return await create_topics(
        settings.kafka_bootstrap_servers, wanted, replication=settings.topic_replication
    )


# -- the wire check --------------------------------------------------------------------
def broker_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when a Kafka broker on host:port answers ApiVersions and a Metadata request
    listing at least one broker (i.e. it has finished starting, not merely bound its port)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            versions = _api_versions(sock)
            low, high = versions.get(_METADATA, (0, -1))
            version = max(low, 4)
            if version > min(high, 8):
                return True  # no Metadata version we can speak; ApiVersions answered
            body = struct.pack(">ib", -1, 0) + (b"\x00\x00" if version >= 8 else b"")
            reply = _exchange(sock, _METADATA, version, 2, body)
            (brokers,) = struct.unpack_from(">i", reply, 4)  # after throttle_time_ms
            return bool(brokers > 0)
    except (OSError, struct.error, ValueError):
        return False


_API_VERSIONS = 18
_METADATA = 3


def _api_versions(sock: socket.socket) -> dict[int, tuple[int, int]]:
    reply = _exchange(sock, _API_VERSIONS, 0, 1, b"")
    error, count = struct.unpack_from(">hi", reply, 0)
    if error != 0:
        raise ValueError(f"ApiVersions error {error}")
    out = {}
    for i in range(count):
        key, low, high = struct.unpack_from(">hhh", reply, 6 + 6 * i)
        out[key] = (low, high)
    return out


def _exchange(sock: socket.socket, api: int, version: int, correlation: int, body: bytes) -> bytes:
    client = b"engage-streams-localkafka"
    header = struct.pack(">hhih", api, version, correlation, len(client)) + client
    request = header + body
    sock.sendall(struct.pack(">i", len(request)) + request)
    (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
    payload = _recv_exactly(sock, size)
    (got,) = struct.unpack_from(">i", payload, 0)
    if got != correlation:
        raise ValueError("correlation id mismatch")
    return payload[4:]


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise OSError("connection closed by the broker")
        chunks += chunk
    return bytes(chunks)


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


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _new_cluster_id() -> str:
    while True:  # Kafka's Uuid never starts with "-"
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


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
