"""Kafka -> state -> metrics, leaderboards, API: the stream workers.

``core/`` holds the rules, pure Python that imports no framework (checked by
``tests/streams/test_layering.py``): ``core/responses/`` (threads, first response and response
times, SLA, backlog, partition totals, channel figures), ``core/gamification/`` (activities,
points, badges, leaderboard ranking), ``core/views/`` (the API's answers), ``core/directory``
(agent and channel names). ``worker/`` is the shell around them: Faust, Kafka, RocksDB,
aiohttp and Prometheus. ``app`` is the Faust entry point ``streams.app:app``.
"""
