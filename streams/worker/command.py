"""``engage-streams worker``: one stream-processing worker, in this very process.

The Faust app is built from the settings the command was given (``build_app``), so signals
reach this process: SIGTERM/SIGINT stop the worker cleanly. Before anything starts, every
config file the worker reads is loaded once (``check_config``): a bad one ends the command
with one line naming its variable, not a traceback from inside the app. Once the app is
built, the garbage collector is tuned for a long-lived heap (``streams.worker.gc_policy``).
"""

from __future__ import annotations

from collections.abc import Callable

from engage_streams import loops
from engage_streams.settings import Settings, SettingsError
from streams.core.directory import load_directory
from streams.core.gamification.scoring import load_scoring_rules
from streams.core.responses.sla import SlaPolicy
from streams.worker import early_web
from streams.worker.gc_policy import tune_collector
from streams.worker.memory import fix_mmap_threshold


def check_config(settings: Settings) -> None:
    """Load the SLA, scoring and agents files; raise ``SettingsError`` naming the bad one."""
    loaders: list[tuple[str, str | None, Callable[[str], object]]] = [
        ("ENGAGE_SLA_CONFIG", settings.sla_config, SlaPolicy.from_file),
        ("ENGAGE_SCORING_CONFIG", settings.scoring_config, load_scoring_rules),
        ("ENGAGE_AGENTS_CONFIG", settings.agents_config, load_directory),
    ]
    for variable, path, load in loaders:
        if path is None:
            continue
        try:
            load(path)
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            message = " ".join(str(exc).split())  # one line
            if not message.startswith(variable):
                message = f"{variable}={path}: {message}"
            raise SettingsError(message) from None


def main(settings: Settings, loglevel: str = "info") -> int:
    check_config(settings)
    fix_mmap_threshold()
    early_web.start(settings.worker_host, settings.worker_web_port)

    # Faust builds its loops itself (the worker's, its consumer thread's): set their kind.
    loops.install(settings.event_loop)
    from faust.worker import Worker

    from streams.worker.app import build_app

    app = build_app(settings)
    tune_collector()  # the modules and the app just built are long-lived: no walking them
    worker = Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0
