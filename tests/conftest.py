"""The test suite's shared fixtures come from the plugins in ``tests/plugins/``.

``kafka`` (the real broker, started once per session), ``fake_engage`` (a local fake of the
classic Engage REST API). Helpers that are not fixtures (``topics``, ``workers``, ``waiting``,
``browser``, ``api_server``, ``stores``) are imported from there by the tests that use them.
"""

pytest_plugins = ["tests.plugins.kafka", "tests.plugins.fake_engage"]
