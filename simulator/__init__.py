"""Contact-center traffic for the demo, the tests and the benchmarks.

``scenario`` (deterministic canonical events), ``deliveries`` (events rendered as the webhook
deliveries Engage would send), ``simulate`` (``engage-streams simulate``: plays a scenario
against a connector), ``platform_api`` (a fake RingCentral platform API: OAuth, contents,
identities, subscriptions). It imports the shared contract only, never ``connectors``/``streams``.
"""
