"""The Faust internals that ``streams.worker.faust_batch`` relies on.

These fail when a faust-streaming upgrade renames or reshapes what we reach into, before
anything subtler breaks. (The batch path itself runs in the worker integration tests.)
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import faust
import rocksdict
from faust.stores import memory, rocksdb
from faust.tables import recovery
from faust.transport import consumer as base_consumer
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from streams.worker.app import RecoveryReport
from streams.worker.faust_batch import (
    BatchApp,
    BatchConsumer,
    BatchTransport,
    ChangelogRestorer,
    RecoveryProgress,
    RecoveryWatch,
    write_changelog_batch,
)
from streams.worker.health import WorkerHealth


def test_pinned_faust_version() -> None:
    # The private surface below was checked against this release; re-check on upgrade.
    assert faust.__version__ == "0.15.3"


def test_consumer_internals_we_call_exist() -> None:
    consumer = aiokafka_driver.Consumer
    for name in ("_wait_next_records", "_to_message", "perform_seek", "_commit", "highwater"):
        assert callable(getattr(consumer, name, None)), name
    assert inspect.isasyncgenfunction(base_consumer.Consumer.getmany)
    params = inspect.signature(base_consumer.Consumer._wait_next_records).parameters
    assert list(params) == ["self", "timeout"]
    assert "flow_active" in dir(base_consumer.Consumer)
    assert hasattr(base_consumer.Consumer, "scheduler") or "scheduler" in inspect.getsource(
        base_consumer.Consumer.__init__
    )


def test_drain_loop_calls_getmany_with_a_timeout() -> None:
    source = inspect.getsource(base_consumer.Consumer._drain_messages)
    assert "getmany(timeout=" in source


def test_batch_consumer_is_what_the_transport_builds() -> None:
    assert BatchTransport.Consumer is BatchConsumer
    assert issubclass(BatchConsumer, aiokafka_driver.Consumer)
    app = BatchApp("faust-batch-test", broker="kafka://127.0.0.1:1", store="memory://")
    assert isinstance(app.transport, BatchTransport)
    assert app.batch_handlers == {}


def test_store_internals_we_use_exist() -> None:
    assert callable(getattr(rocksdb.Store, "_db_for_partition", None))
    assert isinstance(rocksdb.Store.offset_key, bytes)
    # persisted_offset() reads what RocksPartition.set_changelog_offset writes.
    assert "self.offset_key" in inspect.getsource(rocksdb.Store.persisted_offset)
    assert "self.data" in inspect.getsource(memory.Store.__post_init__)


def test_recovery_internals_the_bulk_restore_uses_exist() -> None:
    # ChangelogRestorer advances these offsets and ends the recovery as Faust does.
    source = inspect.getsource(recovery.Recovery.__init__)
    for name in (
        "self.active_tps",
        "self.standby_tps",
        "self.active_offsets",
        "self.standby_offsets",
        "self._active_events_received_at",
        "self._standby_events_received_at",
    ):
        assert name in source, name
    assert hasattr(recovery.Recovery, "_last_flush_at")
    assert hasattr(recovery.Recovery, "in_recovery")
    for name in ("need_recovery", "active_remaining", "flush_buffers", "_set_recovery_ended"):
        assert callable(getattr(recovery.Recovery, name, None)), name
    assert isinstance(recovery.Recovery.signal_recovery_end, property)
    assert "self._recovery_started_at = monotonic()" in inspect.getsource(
        recovery.Recovery._set_recovery_started
    )
    slurp = inspect.getsource(recovery.Recovery._slurp_changelogs.fun)
    # What Faust does per event, and how it ends the recovery: the restorer does the same.
    assert "if seen_offset is None or offset > seen_offset:" in slurp
    assert "self.in_recovery and not self.need_recovery()" in slurp
    end = slurp[slurp.index("self.in_recovery and not self.need_recovery()") :]
    end = end[: end.index("signal_recovery_end.set()")]
    assert "self.flush_buffers()" in end and "self._set_recovery_ended()" in end


def test_faust_stores_changelog_records_raw() -> None:
    # The bulk restore writes the record's raw key and value, like apply_changelog_batch.
    source = inspect.getsource(rocksdb.Store.apply_changelog_batch)
    assert ".put(msg.key, msg.value)" in source and ".delete(msg.key)" in source
    assert "self.set_persisted_offset(tp, offset)" in source


def test_web_server_internals_the_early_start_uses_exist() -> None:
    source = inspect.getsource(faust.App.on_started_init_web_server)
    assert "self._web_server_service_instance is None" in source
    assert "self.on_init_extra_service(" in source
    assert callable(getattr(faust.App, "on_init_extra_service", None))
    app = BatchApp("faust-batch-web-test", broker="kafka://127.0.0.1:1", store="memory://")
    assert app._web_server_service is None and app._web_server_service_instance is None
    assert callable(app.boot_strategy._should_enable_web)


class _Record(NamedTuple):
    offset: int
    key: bytes
    value: bytes | None


class _PartitionStore:
    """The two things ``write_changelog_batch`` uses of Faust's RocksDB store."""

    offset_key = rocksdb.Store.offset_key

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dbs: dict[int, rocksdict.Rdict] = {}

    def _db_for_partition(self, partition: int) -> rocksdict.Rdict:
        if partition not in self.dbs:
            options = rocksdict.Options(raw_mode=True)
            self.dbs[partition] = rocksdict.Rdict(str(self.path / str(partition)), options)
        return self.dbs[partition]


def test_a_changelog_batch_lands_in_rocksdb_with_its_offset(tmp_path: Path) -> None:
    store = _PartitionStore(tmp_path)
    db = store._db_for_partition(2)
    db[b"gone"] = b"old"
    records = [
        _Record(10, b"thread-1", b"v1"),
        _Record(11, b"thread-1", b"v2"),
        _Record(12, b"gone", None),
        _Record(13, b"thread-2", b"w"),
    ]
    write_changelog_batch(store, 2, records, last=13)
    assert db.get(b"thread-1") == b"v2" and db.get(b"thread-2") == b"w"
    assert db.get(b"gone") is None
    assert db.get(store.offset_key) == b"13"  # where Faust's recovery resumes
    for opened in store.dbs.values():
        opened.close()


def test_recovery_progress_ratio() -> None:
    assert RecoveryProgress(0, 0, partitions=0).ratio == 0.0  # nothing known yet
    assert RecoveryProgress(0, 0, partitions=4).ratio == 1.0  # nothing to restore
    assert RecoveryProgress(250, 1000, partitions=4).ratio == 0.25


def test_faust_stream_checks_leave_batch_topics_out() -> None:
    """Faust checks that each assigned partition's *stream* moves; batch topics have none, so
    it logged "Stream has not started processing" (ERROR) for them every few minutes."""
    assert "verify_event_path" in inspect.getsource(
        base_consumer.Consumer.verify_all_partitions_active
    )
    consumer: Any = BatchConsumer.__new__(BatchConsumer)
    checked: list[TP] = []
    consumer.app = SimpleNamespace(batch_handlers={"engage.contents": object()})
    consumer._thread = SimpleNamespace(verify_event_path=lambda now, tp: checked.append(tp))
    consumer.verify_event_path(0.0, TP("engage.contents", 0))
    consumer.verify_event_path(0.0, TP("engage-streams-threads-changelog", 0))
    assert checked == [TP("engage-streams-threads-changelog", 0)]


class _Recovery:
    """What ``ChangelogRestorer`` and ``RecoveryWatch`` read and call of Faust's recovery:
    one active partition restoring up to its highwater."""

    def __init__(self, tp: TP, highwater: int) -> None:
        self.active_tps = {tp}
        self.standby_tps: set[TP] = set()
        self.active_offsets: dict[TP, int] = {tp: -1}
        self.standby_offsets: dict[TP, int] = {}
        self.active_highwaters = {tp: highwater}
        self._active_events_received_at: dict[TP, float] = {}
        self._standby_events_received_at: dict[TP, float] = {}
        self._last_flush_at = 0.0
        self._recovery_started_at = 1.0
        self.in_recovery = True
        self.ended = SimpleNamespace(set=lambda: None)

    @property
    def signal_recovery_end(self) -> Any:
        return self.ended

    def active_remaining(self) -> dict[TP, int]:
        return {tp: self.active_highwaters[tp] - self.active_offsets[tp] for tp in self.active_tps}

    def need_recovery(self) -> bool:
        return any(n > 0 for n in self.active_remaining().values())

    def flush_buffers(self) -> None:
        pass

    def _set_recovery_ended(self) -> None:
        self.in_recovery = False


def test_readiness_follows_each_restored_batch_without_waiting_for_the_timer() -> None:
    # A restore shorter than the report timer's period must still be seen on /readyz: the
    # watch reports from the restore itself, before and after each batch.
    tp = TP("app-threads-changelog", 0)
    fake_recovery = _Recovery(tp, highwater=3)
    app: Any = SimpleNamespace(tables=SimpleNamespace(recovery=fake_recovery))
    app.recovery_watch = RecoveryWatch(app)
    health = WorkerHealth()
    RecoveryReport(app.recovery_watch, health)  # its timer never runs here
    table = SimpleNamespace(data=SimpleNamespace(data={}))
    restorer = ChangelogRestorer(app, table)

    restorer.restore(tp, [_Record(0, b"a", b"1"), _Record(1, b"b", b"2")])
    status, body = health.readyz()
    assert status == 503 and "recovering" in body["reasons"]
    assert body["recovery_progress"] == round(2 / 4, 4)  # 2 of the 4 offsets to the highwater

    restorer.restore(tp, [_Record(2, b"c", b"3"), _Record(3, b"a", None)])
    assert not fake_recovery.in_recovery
    assert "recovering" not in health.reasons and health.recovery_progress is None
    assert table.data.data == {b"b": b"2", b"c": b"3"}
