"""The publisher's partitioning equals Kafka's default (murmur2), as Faust and Java compute it."""

from __future__ import annotations

import json
from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from connectors.publisher import key_partitioner
from engage_streams.record import record_json_schema


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_key_partitioner_matches_kafka_default(key: bytes, count: int) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert key_partitioner(key, partitions, partitions) == expected
    assert key_partitioner(key, partitions, partitions) == expected  # cached: same answer


def test_documented_record_schema_is_current() -> None:
    documented = json.loads(
        (Path(__file__).parent.parent / "docs" / "record.schema.json").read_text()
    )
    assert documented == record_json_schema()
