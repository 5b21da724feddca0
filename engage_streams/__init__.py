"""Engage Streams: real-time response metrics and gamification for Engage Digital.

The shared contract lives here: the canonical record (`record`), the settings object
(`settings`), the command line (`cli`) and the local Kafka broker (`localkafka`).
The data flows `connectors/` (Engage -> Kafka) then `streams/` (Kafka -> state -> metrics).
"""

__version__ = "0.1.0"
