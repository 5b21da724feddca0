"""The worker shell: Faust, Kafka, RocksDB, aiohttp and Prometheus around ``streams.core``.

``app`` (``build_app``), ``faust_batch`` (the only module touching Faust internals),
``contents`` (batches in, durable state out), ``durable`` (the flush protocol),
``thread_store`` (write-back cache of thread states), ``cluster`` (the cluster-wide replica),
``exporter`` and ``metrics`` (Prometheus), ``web`` (API, wallboard), ``enrichment`` (names
from the Engage API), ``command`` (``engage-streams worker``).
"""
