"""The Faust entry point ``streams.app:app`` (``faust -A streams.app worker``).

The app is built from the environment's settings (``Settings.from_env()``) by
``streams.worker.app.build_app`` the first time ``app`` is looked up, so importing this
module has no side effect. ``engage-streams worker`` does not come through here: it builds
the app from the settings it was given.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from engage_streams.settings import Settings
    from streams.worker.app import build_app

    app = build_app(Settings.from_env())
    globals()["app"] = app
    return app
