"""Engage -> Kafka: webhook deliveries in, canonical records (``engage_streams.record``) out.

``envelopes`` (pure: what a delivery means), ``deliveries`` (pure: records rendered back as
deliveries), ``server`` (aiohttp receiver, ``engage-streams connector``), ``publisher``
(aiokafka producer), ``metrics``, ``rest`` (Engage REST client), ``backfill``, ``simulate``.
Kept free of imports so that ``import connectors`` stays cheap.
"""
