"""A ``ThreadStore`` in a dict, for the rule tests and the core benchmark (the worker uses
``streams.worker.thread_store.ThreadCache`` over its table)."""

from __future__ import annotations

from streams.core.responses.threads import ThreadState


class MemoryThreadStore:
    """Thread id -> state in ``data``."""

    def __init__(self) -> None:
        self.data: dict[str, ThreadState] = {}

    def get(self, thread_id: str) -> ThreadState | None:
        return self.data.get(thread_id)

    def put(self, thread_id: str, state: ThreadState) -> None:
        self.data[thread_id] = state

    def delete(self, thread_id: str) -> None:
        self.data.pop(thread_id, None)
