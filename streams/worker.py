"""``engage-streams worker``: one stream-processing worker, in this very process.

Settings given on the command line are exported to the environment first, because
``streams.app`` reads its settings when imported (so ``faust -A streams.app worker`` works
the same way). Signals reach this process: SIGTERM/SIGINT stop the worker cleanly.
"""

from __future__ import annotations

import os
from dataclasses import fields

from engage_streams.settings import Settings


def export_settings(settings: Settings) -> None:
    """Put every setting into the environment, where ``streams.app`` reads them."""
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value is None:
            continue
        if isinstance(value, bool):
            value = "1" if value else "0"
        os.environ[f.metadata["env"]] = str(value)


def main(settings: Settings, loglevel: str = "info") -> int:
    export_settings(settings)
    from faust.worker import Worker

    from streams.app import app

    worker = Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0
