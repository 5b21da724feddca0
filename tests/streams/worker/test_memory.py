"""The worker gives freed heap memory back to the system (glibc's malloc keeps it otherwise)."""

from __future__ import annotations

import os
import platform

import pytest

from benchmarks.recovery_bench import rss_bytes
from streams.worker.memory import fix_mmap_threshold, release_free_memory

glibc_only = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="malloc_trim and mallopt are glibc's"
)


@glibc_only
def test_the_mmap_threshold_is_taken() -> None:
    assert fix_mmap_threshold() is True


@glibc_only
def test_freed_heap_pages_go_back_to_the_system() -> None:
    # 200 MB of 2 KB blocks (malloc's heap, not Python's small-object arenas), one in ten
    # kept, so that the heap cannot just shrink from its top when the rest is freed.
    blocks = [bytes(2048) for _ in range(100_000)]
    kept = blocks[::10]
    del blocks
    before = rss_bytes(os.getpid())
    assert release_free_memory() is True
    after = rss_bytes(os.getpid())
    assert before - after > 50 * 1024 * 1024, (before, after)
    assert len(kept) == 10_000
