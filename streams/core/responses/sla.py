"""How fast each channel (source) must be answered: the SLA policy.

``SlaPolicy.seconds_for(source_id, source_type)`` is the response-time target of a source:
the per-source value from the SLA config file when it names the source, else the default of
the channel's kind -- asynchronous channels (email, reviews) get ``default_async_seconds``
(3600 s), every other (messaging) channel ``default_messaging_seconds`` (300 s).

The config file (``ENGAGE_SLA_CONFIG``) is JSON, every key optional::

    {"default_async_seconds": 3600, "default_messaging_seconds": 300,
     "async_source_types": ["email", "google_my_business", ...],
     "sources": {"<source_id>": 120}}

A source type is asynchronous when it contains one of ``async_source_types`` (case
insensitive), so ``email``, ``emails/email`` and ``google_reviews`` all match the defaults.
Errors (``SlaConfigError``) name the field to fix. Pure: reads a file, imports no framework.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

DEFAULT_ASYNC_SECONDS = 3600.0
DEFAULT_MESSAGING_SECONDS = 300.0
#: Substrings of a source type that make a channel asynchronous (answered in hours).
DEFAULT_ASYNC_SOURCE_TYPES: tuple[str, ...] = (
    "email",
    "mail",
    "review",
    "google_my_business",
    "app_store",
    "play_store",
    "trustpilot",
)


class SlaConfigError(ValueError):
    """The SLA config cannot be used; the message names the field."""


class SlaPolicy:
    """Response-time target per source.

    >>> policy = SlaPolicy(sources={"wa-1": 60})
    >>> policy.seconds_for("wa-1", "whatsapp"), policy.seconds_for("mb-1", "email")
    (60.0, 3600.0)
    """

    __slots__ = ("_async_types", "_cache", "_sources", "async_seconds", "messaging_seconds")

    def __init__(
        self,
        *,
        default_async_seconds: float = DEFAULT_ASYNC_SECONDS,
        default_messaging_seconds: float = DEFAULT_MESSAGING_SECONDS,
        async_source_types: tuple[str, ...] = DEFAULT_ASYNC_SOURCE_TYPES,
        sources: Mapping[str, float] | None = None,
    ) -> None:
        self.async_seconds = _seconds("default_async_seconds", default_async_seconds)
        self.messaging_seconds = _seconds("default_messaging_seconds", default_messaging_seconds)
        self._async_types = tuple(t.lower() for t in async_source_types)
        self._sources = {str(k): _seconds(f"sources.{k}", v) for k, v in (sources or {}).items()}
        self._cache: dict[tuple[str | None, str | None], float] = {}

    def seconds_for(self, source_id: str | None, source_type: str | None) -> float:
        """The SLA (seconds) of a source: configured per source, else by channel kind."""
        key = (source_id, source_type)
        try:
            return self._cache[key]
        except KeyError:
            pass
        if source_id is not None and source_id in self._sources:
            value = self._sources[source_id]
        elif self.is_async(source_type):
            value = self.async_seconds
        else:
            value = self.messaging_seconds
        if len(self._cache) < 100_000:  # bounded: sources are few, but ids come from outside
            self._cache[key] = value
        return value

    def is_async(self, source_type: str | None) -> bool:
        """True for channels answered in hours (email, reviews), per ``async_source_types``."""
        if not source_type:
            return False
        lowered = source_type.lower()
        return any(t in lowered for t in self._async_types)

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> SlaPolicy:
        """A policy from a decoded config; raises ``SlaConfigError`` naming the bad field."""
        if not isinstance(config, Mapping):
            raise SlaConfigError("SLA config must be a JSON object")
        known = {
            "default_async_seconds",
            "default_messaging_seconds",
            "async_source_types",
            "sources",
        }
        unknown = sorted(set(config) - known)
        if unknown:
            raise SlaConfigError(f"unknown SLA config field {unknown[0]!r}")
        kwargs: dict[str, Any] = {}
        for name in ("default_async_seconds", "default_messaging_seconds"):
            if name in config:
                kwargs[name] = config[name]
        if "async_source_types" in config:
            types = config["async_source_types"]
            if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
                raise SlaConfigError("async_source_types must be a list of non-empty strings")
            kwargs["async_source_types"] = tuple(types)
        if "sources" in config:
            sources = config["sources"]
            if not isinstance(sources, Mapping):
                raise SlaConfigError("sources must be an object of source id -> seconds")
            kwargs["sources"] = sources
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path | None) -> SlaPolicy:
        """The policy of the JSON file at ``path``; the built-in defaults when ``None``."""
        if path is None:
            return cls()
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise SlaConfigError(f"ENGAGE_SLA_CONFIG: cannot read {path}: {exc.strerror}") from None
        try:
            config = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise SlaConfigError(f"ENGAGE_SLA_CONFIG: {path} is not JSON ({exc})") from None
        return cls.from_mapping(config)


def _seconds(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SlaConfigError(f"{field} must be a number of seconds (got {value!r})")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise SlaConfigError(f"{field} must be a finite number >= 0 (got {value!r})")
    return seconds
