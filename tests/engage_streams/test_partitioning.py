"""Kafka's default partitioning (murmur2, as Java and Faust compute it), defined once."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from connectors.publisher import key_partitioner
from engage_streams.partitioning import partition_for


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_partition_for_matches_kafka_default(key: bytes, count: int) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert partition_for(key, count) == expected
    assert partition_for(key, count) == expected  # cached: same answer


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_publisher_partitions_like_kafka(key: bytes, count: int) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert key_partitioner(key, partitions, partitions) == expected
