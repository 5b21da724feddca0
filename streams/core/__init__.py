"""The stream rules: pure Python, no import of faust, mode, aiokafka, aiohttp or
prometheus_client (``tests/streams/test_layering.py`` fails if one is loaded)."""
