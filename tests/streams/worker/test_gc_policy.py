"""The worker's collector policy: start-up objects frozen, young collections rarer, cycles
still collected without anybody calling ``gc.collect``."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from streams.worker.gc_policy import OLDER_THRESHOLDS, YOUNG_THRESHOLD, tune_collector


@pytest.fixture
def tuned() -> Iterator[tuple[int, int, int]]:
    before = tune_collector()
    try:
        yield before
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_objects_alive_when_tuned_are_frozen_and_the_young_threshold_is_raised(
    tuned: tuple[int, int, int],
) -> None:
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    assert tuned != gc.get_threshold()


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_cyclic_garbage_is_still_collected_by_allocation_alone(
    tuned: tuple[int, int, int],
) -> None:
    gc.collect()  # start from an empty young generation
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    assert gone() is not None  # a cycle: reference counting alone does not free it
    keep: list[list[int]] = []
    for _ in range(YOUNG_THRESHOLD * 2):  # kept: the young generation's count only grows
        keep.append([])
        if gone() is None:
            break
    assert gone() is None
    assert len(keep) > YOUNG_THRESHOLD // 2  # not collected before the raised threshold
