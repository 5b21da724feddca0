"""The traffic generator: contact-center scenarios played as webhooks, and a fake platform API.

Development and test tooling only: nothing in ``connectors/`` or ``streams/`` imports it.
"""
