"""Kafka's default partitioning (murmur2, as Java and Faust compute it), defined once."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given
from hypothesis import strategies as st

from connectors.publisher import key_partitioner
from engage_streams.partitioning import key_hash, partition_for


@given(st.binary(min_size=0, max_size=64), st.integers(min_value=1, max_value=64))
def test_partition_for_matches_kafka_default(key: bytes, count: int) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert partition_for(key, count) == expected
    assert key_hash(key) == murmur2(key) & 0x7FFFFFFF


def test_kafka_s_own_murmur2_vectors() -> None:
    """Values of Java Kafka's ``Utils.murmur2`` (its ``UtilsTest.testMurmur2``)."""
    vectors = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, java in vectors.items():
        assert key_hash(key) == java & 0x7FFFFFFF


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_publisher_partitions_like_kafka(key: bytes, count: int) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert key_partitioner(key, partitions, partitions) == expected
