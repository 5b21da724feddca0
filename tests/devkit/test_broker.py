"""The local broker: start, status, restart, stop, topics -- against the real Apache Kafka."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from devkit.broker import (
    KafkaAlreadyRunning,
    KafkaConfig,
    KafkaStartFailed,
    LocalKafka,
    LocalKafkaError,
    default_data_dir,
)
from devkit.ports import free_port
from devkit.probe import broker_answers
from engage_streams.settings import Settings
from engage_streams.topics import ensure_topics
from tests.plugins.topics import end_offsets, produce, read_topic


def test_default_data_dir_follows_engage_data_dir() -> None:
    assert default_data_dir({"ENGAGE_DATA_DIR": "/srv/es"}) == Path("/srv/es/kafka")
    assert default_data_dir({}) == Path.home() / ".local/share/engage-streams/kafka"


def test_jars_are_cached_per_kafka_version() -> None:
    config = KafkaConfig(data_dir=Path("/x"), kafka_version="9.9.9")
    assert config.jars_dir == Path.home() / ".cache/engage-streams/kafka-9.9.9/libs"


def test_nothing_answers_on_a_closed_port() -> None:
    assert broker_answers("127.0.0.1", free_port(), timeout=1.0) is False


def test_status_of_a_never_started_broker(tmp_path: Path) -> None:
    status = LocalKafka(KafkaConfig(data_dir=tmp_path, port=free_port())).status()
    assert not status.running
    assert status.pid is None
    assert "not running" in str(status)


def test_start_on_a_busy_port_names_the_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        port = free_port()
        busy.bind(("127.0.0.1", port))
        busy.listen()
        kafka = LocalKafka(KafkaConfig(data_dir=tmp_path, port=port))
        with pytest.raises(LocalKafkaError, match=f"port {port} .* in use"):
            kafka.start()
    assert not kafka.status().running


def test_a_broker_that_cannot_start_says_why(tmp_path: Path) -> None:
    kafka = LocalKafka(KafkaConfig(data_dir=tmp_path, port=free_port(), max_heap="1k"))
    with pytest.raises(KafkaStartFailed, match=r"(?i)heap"):
        kafka.start()
    assert not kafka.status().running
    assert not kafka.pid_file.exists()


@pytest.mark.kafka
def test_running_broker_status_and_second_start(kafka_broker: LocalKafka) -> None:
    status = kafka_broker.status()
    assert status.running
    assert status.bootstrap_servers == kafka_broker.bootstrap_servers
    assert f"pid {status.pid}" in str(status)
    with pytest.raises(KafkaAlreadyRunning, match="already running"):
        kafka_broker.start()
    assert kafka_broker.status() == status


@pytest.mark.kafka
async def test_topic_round_trip(kafka_broker: LocalKafka) -> None:
    assert kafka_broker.create_topics({"roundtrip": 3}) == ["roundtrip"]
    assert kafka_broker.create_topics({"roundtrip": 3}) == []  # already there: no error
    sent = [(f"thread-{i % 5}".encode(), f"content-{i}".encode()) for i in range(30)]
    await produce(kafka_broker.bootstrap_servers, "roundtrip", sent)

    records = await read_topic(kafka_broker.bootstrap_servers, "roundtrip", 30)

    assert sorted((r.key, r.value) for r in records) == sorted(sent)
    partition_of_thread = {r.key: r.partition for r in records}
    assert all(partition_of_thread[r.key] == r.partition for r in records)  # keyed
    assert sum((await end_offsets(kafka_broker.bootstrap_servers, "roundtrip")).values()) == 30


@pytest.mark.kafka
async def test_ensure_topics_creates_events_and_dlq_topics(kafka_broker: LocalKafka) -> None:
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
        topic="ensure.events",
        dlq_topic="ensure.dlq",
        topic_partitions=4,
    )
    assert sorted(await ensure_topics(settings)) == ["ensure.dlq", "ensure.events"]
    assert await ensure_topics(settings) == []
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(["ensure.events", "ensure.dlq"])
    finally:
        await admin.close()
    partitions = {t["topic"]: len(t["partitions"]) for t in described}
    assert partitions == {"ensure.events": 4, "ensure.dlq": 1}


@pytest.mark.kafka
async def test_the_broker_creates_no_topic_by_itself(kafka_broker: LocalKafka) -> None:
    with pytest.raises(AssertionError, match="does not exist"):
        await read_topic(kafka_broker.bootstrap_servers, "never.created", 1, timeout=2)


@pytest.mark.kafka
async def test_stop_then_restart_keeps_topics_and_records(kafka_broker: LocalKafka) -> None:
    kafka_broker.create_topic("survives", partitions=2)
    sent = [(b"t", b"before-restart-%d" % i) for i in range(5)]
    await produce(kafka_broker.bootstrap_servers, "survives", sent)
    port = kafka_broker.config.port

    assert kafka_broker.stop() is True

    status = kafka_broker.status()
    assert not status.running and status.pid is None
    assert not broker_answers("127.0.0.1", port)
    assert kafka_broker.stop() is False  # stopping a stopped broker is harmless

    kafka_broker.start()

    assert kafka_broker.status().running
    records = await read_topic(kafka_broker.bootstrap_servers, "survives", 0)
    assert [(r.key, r.value) for r in records] == sent
