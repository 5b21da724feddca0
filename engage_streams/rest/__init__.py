"""REST clients of the two Engage APIs: ``classic`` (Engage Digital) and ``platform`` (RingCentral).

Each is an async httpx client that owns authentication, paging, rate limits and retries for its
API, and raises errors naming the call and the status, never a credential. Nothing here knows
about Kafka or the canonical record.
"""
