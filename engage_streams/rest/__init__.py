"""Clients of RingCentral's REST APIs, used by the connector (backfill, resolving) and the
worker (names): ``classic`` (Engage Digital, bearer token) and ``platform`` (RingCentral
platform, OAuth). They import nothing of ``connectors`` or ``streams``."""
