"""``engage-streams worker``: one stream-processing worker, in this very process.

The Faust app is built from the settings the command was given (``build_app``), so signals
reach this process: SIGTERM/SIGINT stop the worker cleanly.
"""

from __future__ import annotations

from engage_streams.settings import Settings


def main(settings: Settings, loglevel: str = "info") -> int:
    from faust.worker import Worker

    from streams.worker.app import build_app

    worker = Worker(build_app(settings), loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0
