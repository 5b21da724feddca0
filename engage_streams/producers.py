"""When an idempotent Kafka producer must be replaced rather than retried.

An idempotent aiokafka producer numbers its record batches per partition, under the producer
id the broker gave it. When the broker has lost the thread of those numbers -- batches given
up while a broker restarted, a producer id the broker forgot -- it refuses every later batch
of that producer (``OutOfOrderSequenceNumber``, ``UnknownProducerId``), and aiokafka's sender
task may stop for good. The Java client bumps its epoch and goes on (KIP-360); aiokafka does
not, so retrying with the same producer fails forever: the connector answered 503 to every
delivery after a broker restart, for minutes, until it was restarted. Only a new producer
(a new producer id, sequences from 0) writes again. Its records are ones that failed and are
sent again; the pipeline deduplicates resends already (by event id, by applied offset).

>>> from aiokafka.errors import OutOfOrderSequenceNumber, RequestTimedOutError
>>> needs_new_producer(OutOfOrderSequenceNumber())
True
>>> needs_new_producer(RequestTimedOutError())
False
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

log = logging.getLogger(__name__)

#: Errors after which the producer that got them never writes again.
PRODUCER_LOST: Final = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    ProducerFenced,
)


def needs_new_producer(error: BaseException) -> bool:
    """The producer that raised ``error`` is of no more use: make a new one."""
    return isinstance(error, PRODUCER_LOST)


def sender_stopped(producer: Any) -> bool:
    """aiokafka's sender task of a started ``producer`` has ended (it never restarts)."""
    sender = getattr(producer, "_sender", None)
    task = getattr(sender, "sender_task", None)
    return task is not None and task.done()


async def close_quietly(producer: Any, within_seconds: float = 5.0) -> None:
    """Close a producer that is of no more use; what it still held fails (and is resent)."""
    try:
        await asyncio.wait_for(producer.stop(), within_seconds)
    except (KafkaError, TimeoutError, OSError) as error:
        log.info("event=producer_closed_uncleanly error=%r", error)
