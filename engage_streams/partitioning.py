"""Which Kafka partition a key goes to: the one definition of Kafka's default partitioner.

``partition_for(key, partitions)`` is what Java's and Faust's default partitioners compute
(murmur2 of the key bytes, sign bit cleared, modulo the partition count). The connector keys
contents by thread id and the worker keys activities by agent id; both, and every table
partition the worker reads, must agree on it, so it lives here once. Hashes of recent keys
are cached: aiokafka's murmur2 is pure Python, and the same threads and agents come back.

>>> partition_for(b"thread-1", 8) == partition_for(b"thread-1", 8)
True
>>> 0 <= partition_for(b"any key", 3) < 3
True
"""

from __future__ import annotations

import functools

from aiokafka.partitioner import murmur2

__all__ = ["key_hash", "partition_for"]


@functools.lru_cache(maxsize=65536)
def key_hash(key: bytes) -> int:
    """Kafka's positive murmur2 hash of ``key``."""
    return int(murmur2(key)) & 0x7FFFFFFF


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``partitions`` that Kafka's default partitioner picks for ``key``."""
    return key_hash(key) % partitions
