"""Which Kafka partition a key goes to: the one definition of Kafka's default partitioner.

``partition_for(key, partitions)`` is what Java's and Faust's default partitioners compute
(murmur2 of the key bytes with Kafka's seed, sign bit cleared, modulo the partition count).
The connector keys contents by thread id and the worker keys activities by agent id and
waiting runs by run; both, and every table partition the worker reads, must agree on it, so
it lives here once. The hash is the ``murmurhash2`` package's C implementation (0.4 us a key;
aiokafka's pure-Python ``murmur2`` took 9 us, 4 % of a busy worker's core: every waiting run
has a key of its own). ``tests/engage_streams/test_partitioning.py`` checks it against
aiokafka's partitioner.

>>> partition_for(b"thread-1", 8) == partition_for(b"thread-1", 8)
True
>>> 0 <= partition_for(b"any key", 3) < 3
True
"""

from __future__ import annotations

from murmurhash2 import murmurhash2

__all__ = ["key_hash", "partition_for"]

#: The seed of Kafka's ``Utils.murmur2``.
KAFKA_SEED = 0x9747B28C


def key_hash(key: bytes) -> int:
    """Kafka's positive murmur2 hash of ``key``."""
    return murmurhash2(key, KAFKA_SEED) & 0x7FFFFFFF


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``partitions`` that Kafka's default partitioner picks for ``key``."""
    return (murmurhash2(key, KAFKA_SEED) & 0x7FFFFFFF) % partitions
