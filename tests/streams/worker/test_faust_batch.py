"""The Faust internals that ``streams.worker.faust_batch`` relies on.

These fail when a faust-streaming upgrade renames or reshapes what we reach into, before
anything subtler breaks. (The batch path itself runs in the worker integration tests.)
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import faust
from faust.stores import memory, rocksdb
from faust.transport import consumer as base_consumer
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from streams.worker.faust_batch import BatchApp, BatchConsumer, BatchTransport


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
