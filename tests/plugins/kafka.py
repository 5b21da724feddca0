"""The real local Kafka broker for the tests, started once per test session (a pytest plugin).

Tests marked ``@pytest.mark.kafka`` (or asking for ``kafka_broker``) get a running broker:
``kafka_broker.bootstrap_servers``, ``.create_topic(name, partitions=1)``,
``.create_topics({name: partitions})``, ``.stop()`` and ``.start()`` (restart on the same
ports and data, topics and records kept). A test that stops it need not restart it: the next
test that needs the broker gets it running again. Topic helpers: ``tests.plugins.topics``.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from types import FrameType

import pytest

from devkit.broker import KafkaConfig, LocalKafka
from devkit.ports import free_port
from engage_streams.settings import Settings


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (CI timeout, a supervisor) becomes an interrupt, so fixtures are torn down and
    # the broker -- in its own process group -- is stopped rather than left running.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A LocalKafka on free ports in a temporary data dir, stopped at the end of the session."""
    broker = LocalKafka(
        KafkaConfig(
            data_dir=tmp_path_factory.mktemp("kafka"),
            port=free_port(),
            controller_port=free_port(),
        )
    )
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture(autouse=True)
def _running_kafka_for_marked_tests(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("kafka") or "kafka_broker" in request.fixturenames:
        broker: LocalKafka = request.getfixturevalue("kafka_broker")
        if not broker.status().running:
            broker.start()


@pytest.fixture
def kafka_settings(kafka_broker: LocalKafka) -> Settings:
    """Settings pointing at the test broker, with topic names of this test only (not created:
    ``await ensure_topics(kafka_settings)`` creates them)."""
    suffix = uuid.uuid4().hex[:10]
    return Settings(
        kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
        topic=f"engage.contents.{suffix}",
        dlq_topic=f"engage.contents.dlq.{suffix}",
        waiting_topic=f"engage.waiting-runs.{suffix}",
        topic_partitions=4,
        app_id=f"engage-streams-test-{suffix}",
    )
