"""Per-channel figures: what one partition knows about each source, and the cluster's sum.

The owner of a partition publishes its ``PartitionSummary`` (volumes, response histograms,
SLA counts, backlog with the *time* of the oldest waiting content, so ages stay right as the
clock moves); every worker merges the latest summary of every partition with
``merge_channels`` to answer ``GET /api/v1/channels`` for the whole cluster. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from streams.core.responses.partition import PartitionState, backlog, volumes
from streams.core.responses.totals import Histogram


class ChannelFigures(msgspec.Struct, kw_only=True):
    """One source's numbers, in one partition or summed over the cluster."""

    source_id: str
    source_type: str
    contents_inbound: int = 0
    contents_outbound: int = 0
    response: Histogram = msgspec.field(default_factory=Histogram)
    first_response: Histogram = msgspec.field(default_factory=Histogram)
    within_sla: int = 0
    outside_sla: int = 0
    late: int = 0
    backlog_contents: int = 0
    backlog_oldest_time: float | None = None


class PartitionSummary(msgspec.Struct, kw_only=True):
    """The channel figures of one partition, as its owner last flushed them."""

    partition: int
    generated_at: float
    channels: list[ChannelFigures]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(PartitionSummary)


def encode_summary(summary: PartitionSummary) -> bytes:
    return _encoder.encode(summary)


def decode_summary(raw: bytes) -> PartitionSummary:
    return _decoder.decode(raw)


def summarize(partition: int, state: PartitionState, now: float) -> PartitionSummary:
    """The channel figures of one partition's (flushed) state at ``now``."""
    channels: dict[tuple[str, str], ChannelFigures] = {}

    def figures(source_id: str, source_type: str) -> ChannelFigures:
        key = (source_id, source_type)
        found = channels.get(key)
        if found is None:
            found = channels[key] = ChannelFigures(source_id=source_id, source_type=source_type)
        return found

    totals = state.totals
    for (source_id, source_type, direction), count in volumes(state).items():
        channel = figures(source_id, source_type)
        if direction == "inbound":
            channel.contents_inbound += count
        else:
            channel.contents_outbound += count
    for (source_id, source_type), histogram in totals.response.items():
        figures(source_id, source_type).response.add(histogram)
    for (source_id, source_type), histogram in totals.first_response.items():
        figures(source_id, source_type).first_response.add(histogram)
    types = {source_id: source_type for source_id, source_type in channels}
    for (source_id, within), count in totals.sla.items():
        channel = figures(source_id, types.get(source_id, ""))
        if within == "true":
            channel.within_sla += count
        else:
            channel.outside_sla += count
    for source_id, count in totals.late.items():
        figures(source_id, types.get(source_id, "")).late += count
    for (source_id, source_type), (count, oldest_age) in backlog(state, now).items():
        channel = figures(source_id, source_type)
        channel.backlog_contents += count
        if count:
            channel.backlog_oldest_time = now - oldest_age
    return PartitionSummary(
        partition=partition,
        generated_at=now,
        channels=sorted(channels.values(), key=lambda c: (c.source_id, c.source_type)),
    )


def merge_channels(summaries: Iterable[PartitionSummary]) -> list[ChannelFigures]:
    """Sum the partitions' figures per source (oldest waiting = earliest over partitions)."""
    merged: dict[tuple[str, str], ChannelFigures] = {}
    for summary in summaries:
        for part in summary.channels:
            key = (part.source_id, part.source_type)
            into = merged.get(key)
            if into is None:
                into = merged[key] = ChannelFigures(
                    source_id=part.source_id, source_type=part.source_type
                )
            into.contents_inbound += part.contents_inbound
            into.contents_outbound += part.contents_outbound
            into.response.add(part.response)
            into.first_response.add(part.first_response)
            into.within_sla += part.within_sla
            into.outside_sla += part.outside_sla
            into.late += part.late
            into.backlog_contents += part.backlog_contents
            if part.backlog_oldest_time is not None and (
                into.backlog_oldest_time is None
                or part.backlog_oldest_time < into.backlog_oldest_time
            ):
                into.backlog_oldest_time = part.backlog_oldest_time
    return sorted(merged.values(), key=lambda c: (c.source_id, c.source_type))
