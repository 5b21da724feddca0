"""Development kit: the local Apache Kafka broker and ``engage-streams demo``.

Used by the demo, the tests and the benchmarks only; product code (``connectors``,
``streams``) never imports it. ``data/`` is package data (the broker's pom and logging
config, sample deliveries, the alert rules), so an installed wheel runs the demo.
"""
