"""The worker as a Faust app, built from an explicit ``Settings``: ``build_app(settings)``.

``engage-streams worker`` builds it from its settings and runs it in-process; ``faust -A
streams.app worker`` gets the same app through ``streams.app`` (built on first access).
Nothing happens at import. What each part does:

- ``engage.contents`` is consumed a fetched batch at a time by ``ContentsPipeline``
  (``streams.worker.contents``) through ``BatchApp`` (``streams.worker.faust_batch``); the
  declared agent only makes Faust subscribe, assign and co-partition the ``threads`` table.
- ``threads`` (key = thread id, RocksDB by default) holds per-thread state and, under
  ``\\x00partition:<p>``, each partition's durable totals (``streams.worker.durable``).
- ``ClusterReplica`` (``streams.worker.cluster``) reads the agent activity, waiting runs and
  partition summaries of the whole cluster, for the leaderboard API, the wallboard and
  ``/channels``.
- ``WorkerWeb`` (``streams.worker.web``) serves the API, the wallboard and ``/metrics``, from
  the start: during a recovery ``/readyz`` says ``recovering`` with its progress
  (``RecoveryReport``), and the changelog is restored in bulk (``BatchApp.restore_in_bulk``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import mode
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from engage_streams.producers import needs_new_producer, sender_stopped
from engage_streams.settings import Settings
from streams.core.directory import AgentProfile, Directory, load_directory
from streams.core.gamification.leaderboard import Standings
from streams.core.gamification.scoring import load_scoring_rules
from streams.core.responses.channels import encode_summary, summarize
from streams.core.responses.partition import PartitionProcessor
from streams.core.responses.sla import SlaPolicy
from streams.worker.cluster import ClusterReplica
from streams.worker.contents import ContentsPipeline
from streams.worker.enrichment import fetch_platform_names, fetch_reference, merge_reference
from streams.worker.faust_batch import BatchApp, RecoveryProgress, RecoveryWatch
from streams.worker.health import WorkerHealth
from streams.worker.memory import TRIM_EVERY_SECONDS, release_free_memory
from streams.worker.web import WorkerWeb

log = logging.getLogger(__name__)

#: Largest changelog record: a partition record carries up to ``max_dirty_threads`` states.
MAX_RECORD_BYTES = 16 * 1024 * 1024

#: The ``threads`` changelog: compacted (one record per thread and partition record survives),
#: in segments small enough to be closed and cleaned while the worker runs -- Kafka never
#: compacts the active segment, and with its 1 GiB default a partition's whole changelog
#: stayed in it, so a cold recovery read every state ever flushed.
CHANGELOG_TOPIC_CONFIG = {
    "max.message.bytes": str(MAX_RECORD_BYTES),
    "segment.bytes": str(64 * 1024 * 1024),
    "segment.ms": str(3600 * 1000),
    "min.cleanable.dirty.ratio": "0.2",
}

#: RocksDB per partition of the ``threads`` table. Faust's defaults (a 2 GiB block cache and
#: 3 x 64 MiB memtables per partition database) let a worker of 4 partitions grow past 2 GB;
#: the hot thread states live in ``ThreadCache`` anyway.
ROCKSDB_OPTIONS = {
    "driver": "rocksdict",
    "block_cache_size": 8 * 1024 * 1024,
    "write_buffer_size": 8 * 1024 * 1024,
    "max_write_buffer_number": 2,
}

#: How often ``/readyz`` and the recovery metrics are brought up to date during a recovery.
RECOVERY_REPORT_SECONDS = 0.25


def _broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{server.strip()}" for server in bootstrap.split(",") if server.strip()]


class RecoveryReport(mode.Service):
    """Says on ``/readyz`` and in the metrics whether, and how far, the table is recovering:
    at every restored batch (the watch's listener) and, between batches, on a timer."""

    def __init__(self, watch: RecoveryWatch, health: WorkerHealth, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.watch = watch
        watch.listener = lambda progress: report_recovery(progress, health)

    @mode.Service.timer(RECOVERY_REPORT_SECONDS)
    async def _report(self) -> None:
        self.watch.observe()


def report_recovery(progress: RecoveryProgress | None, health: WorkerHealth) -> None:
    if progress is None:
        health.ready_again("recovering")
        return
    health.not_ready(
        "recovering",
        f"threads table: {progress.restored} of {progress.to_restore} changelog records "
        f"restored ({progress.partitions} partitions)",
    )
    health.recovery_progress = progress.ratio


def build_app(settings: Settings) -> BatchApp:
    """The worker's Faust app with its table, pipeline, replica, web server and timers."""
    activity_topic = settings.activity_topic
    summary_topic = settings.summary_topic
    # Faust creates its data directory but not the parents of it.
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)

    app = BatchApp(
        settings.app_id,
        broker=_broker_urls(settings.kafka_bootstrap_servers),
        store=settings.store,
        datadir=str(Path(settings.data_dir) / "worker-{conf.id}-{conf.web_port}"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        web_port=settings.worker_web_port,
        web_bind=settings.worker_host,
        web_host=settings.worker_host,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        table_standby_replicas=0,
        broker_commit_interval=2.0,
        # A worker that died (kill -9, a lost node) holds its partitions until its session
        # expires, and a joining worker waits for the rebalance: 60 s each by default.
        # Heartbeats come from the consumer's own thread, so a busy worker still sends them;
        # 30 s leaves room for a revoked partition's last flush (LAST_FLUSH_PATIENCE_SECONDS).
        broker_session_timeout=15.0,
        broker_heartbeat_interval=3.0,
        broker_rebalance_timeout=30.0,
        stream_wait_empty=False,
        # Whole batches go to the pipeline: fetch big ones.
        broker_max_poll_records=settings.worker_max_poll_records,
        consumer_max_fetch_size=4 * 1024 * 1024,
    )

    contents_topic = app.topic(
        settings.topic,
        internal=True,  # declared (created when missing) by the app
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )

    threads = app.Table(
        "threads",
        partitions=settings.topic_partitions,
        # bytes in and out: the changelog's records are read back raw during recovery too.
        key_type=bytes,
        value_type=bytes,
        extra_topic_configs=CHANGELOG_TOPIC_CONFIG,
        # streams.worker.thread_store reads and writes the rocksdict databases directly.
        options=dict(ROCKSDB_OPTIONS) if settings.store.startswith("rocksdb") else None,
        help="Per-thread state and each partition's durable totals (see streams.worker.durable).",
    )
    # Recovery writes the changelog to RocksDB a fetched batch at a time (not event by event).
    app.restore_in_bulk(threads)

    @app.agent(contents_topic, name="contents")
    async def contents(stream: Any) -> None:
        """Never receives events: ``ContentsPipeline`` takes this topic's batches (see above)."""
        async for _ in stream:  # pragma: no cover
            pass

    def _new_producer() -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=1024 * 1024,
            max_request_size=MAX_RECORD_BYTES + 1024 * 1024,
            request_timeout_ms=30_000,
        )

    health = WorkerHealth()
    pipeline = ContentsPipeline(
        app=app,
        table=threads,
        processor=PartitionProcessor(
            SlaPolicy.from_file(settings.sla_config),
            reorder_window_seconds=settings.reorder_window_seconds,
            idle_horizon_seconds=settings.thread_idle_horizon_seconds,
        ),
        topic=settings.topic,
        activity_topic=activity_topic,
        waiting_topic=settings.waiting_topic,
        partitions=settings.topic_partitions,
        thread_cache_size=settings.thread_cache_size,
        producer_factory=_new_producer,
        prepare_topics=lambda: _ensure_side_topics(),
        health=health,
    )
    app.batch_handlers[settings.topic] = pipeline.on_batch

    scoring_rules = load_scoring_rules(settings.scoring_config)
    # Agent profiles: the agents config file, completed from the Engage API when configured
    # (``_refresh_reference``). The directory is a read-only view over this dict.
    configured = load_directory(settings.agents_config)
    agent_profiles: dict[str, AgentProfile] = dict(configured.profiles)
    configured_agents = frozenset(agent_profiles)
    # Other ids of the agents (RingCentral extension id -> Engage user id): names only, the
    # connector already wrote one id per agent into the records (see streams.worker.enrichment).
    agent_aliases: dict[str, str] = dict(configured.aliases)  # the file's rc_user_id first
    directory = Directory(MappingProxyType(agent_profiles), aliases=MappingProxyType(agent_aliases))
    source_names: dict[str, str] = dict(configured.sources)
    standings = Standings(scoring_rules, settings.timezone, directory)
    replica = ClusterReplica(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        activity_topic=activity_topic,
        summary_topic=summary_topic,
        waiting_topic=settings.waiting_topic,
        standings=standings,
    )
    pipeline.own = replica  # its own records are not read back
    web = WorkerWeb(
        settings=settings,
        pipeline=pipeline,
        replica=replica,
        directory=directory,
        source_names=source_names,
        contents_topic=settings.topic,
        health=health,
    )
    # Started before the table is recovered (BatchApp), with the recovery report beside it.
    app.web_server(web)
    web.add_dependency(RecoveryReport(app.recovery_watch, health))

    def _owned_partitions(assigned: Any) -> set[int]:
        return {tp.partition for tp in assigned if tp.topic == settings.topic}

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked", set())
        await pipeline.on_revoked(_owned_partitions(revoked))

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _on_rebalance_complete(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await pipeline.on_assigned(_owned_partitions(app.assignor.assigned_actives()))
        health.rebalances += 1
        if pipeline.producer is not None:
            health.ready_again("starting")

    # Often enough that a content is released (and its response exported) soon after its
    # reorder window has passed; a tick with nothing due costs a heap peek per partition.
    @app.timer(0.25)  # type: ignore[untyped-decorator]
    async def _tick() -> None:
        await pipeline.tick()

    @app.timer(TRIM_EVERY_SECONDS)  # type: ignore[untyped-decorator]
    async def _give_back_memory() -> None:
        release_free_memory()

    @app.service
    class ClusterServices(mode.Service):
        """Creates the side topics, runs the replica, publishes partition summaries."""

        summaries: asyncio.Task[None] | None = None

        async def on_start(self) -> None:
            await pipeline.start()  # declares the side topics the replica reads
            if health.rebalances:
                health.ready_again("starting")
            await replica.start()
            await _refresh_reference()

        @mode.Service.timer(600.0)
        async def _refresh(self) -> None:
            await _refresh_reference()

        async def on_stop(self) -> None:
            await replica.stop()
            await pipeline.stop()

        @mode.Service.timer(2.0)
        async def _publish_summaries(self) -> None:
            # In the background: while Kafka is away a send waits, and the timer goes on.
            if self.summaries is None or self.summaries.done():
                self.summaries = asyncio.create_task(_send_summaries(), name="summaries")

    async def _send_summaries() -> None:
        """Each owned partition's channel figures; the next round replaces a failed one."""
        producer = pipeline.producer
        snapshots = pipeline.snapshots()
        if producer is None or not snapshots:
            return
        now = time.time()
        ticket = pipeline.watchdog.write_started("partition summaries")
        try:
            sends = [
                await producer.send(
                    summary_topic,
                    key=str(partition).encode(),
                    value=encode_summary(summarize(partition, state, now)),
                )
                for partition, state in snapshots.items()
            ]
            await asyncio.gather(*sends)
        except KafkaError as exc:
            if needs_new_producer(exc) or sender_stopped(producer):
                pipeline.replace_producer(producer)
            pipeline.watchdog.write_failed("partition summaries", exc)
            log.info("partition summaries not sent: %r", exc)
        else:
            pipeline.watchdog.write_done(ticket)
        finally:
            pipeline.watchdog.write_abandoned(ticket)

    async def _ensure_side_topics() -> None:
        await app.topic(
            activity_topic, partitions=settings.topic_partitions, value_serializer="raw"
        ).maybe_declare()
        await app.topic(
            summary_topic,
            partitions=settings.topic_partitions,
            value_serializer="raw",
            compacting=True,
            deleting=False,
        ).maybe_declare()
        # Compacted by run (thread + start): the closed record of a run replaces its open one,
        # and a customer still waiting is never deleted by retention.
        await app.topic(
            settings.waiting_topic,
            partitions=settings.topic_partitions,
            value_serializer="raw",
            compacting=True,
            deleting=False,
        ).maybe_declare()

    async def _refresh_reference() -> None:
        """Agent names and teams, channel names from the Engage API (the config file wins);
        from the platform's identities where the classic API is not configured."""
        if settings.engage_api_url and settings.engage_api_token:
            reference = await fetch_reference(settings.engage_api_url, settings.engage_api_token)
        else:
            found = await fetch_platform_names(settings)
            if found is None:
                return
            reference = found
        merge_reference(agent_profiles, source_names, reference, configured_agents, agent_aliases)
        source_names.update(configured.sources)  # the config file wins for channels too
        log.info(
            "names read from the API: agents=%d sources=%d aliases=%d missing=%s",
            len(reference.agents),
            len(reference.sources),
            len(reference.aliases),
            ",".join(sorted(reference.missing)) or "-",
        )

    return app
