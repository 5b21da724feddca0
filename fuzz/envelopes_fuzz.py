"""Coverage-guided fuzzing (atheris / libFuzzer) of the connector's envelope parsing.

Each input is one webhook body, tried at both endpoints with body forwarding off and on, and
checked by the same invariant as the hypothesis tests (``tests/connectors/delivery_invariant``
``check_parsed``): only ``EnvelopeError`` may escape, and every event of a readable body is a
record or a dead letter that encodes for Kafka, without the customer's words unless forwarding
is on. Not a test: run it by hand with a budget (``pip install -e '.[fuzz]'``, Linux x86-64,
Python 3.11 wheels need no compiler)::

    .venv/bin/python fuzz/envelopes_fuzz.py -max_total_time=300 \
        -artifact_prefix=fuzz/crashes/ fuzz/corpus

``fuzz/corpus`` seeds it with the sample deliveries (libFuzzer adds what it finds there); a
crash is written to ``fuzz/crashes/`` and ``tests/connectors/test_envelope_fuzz.py`` replays
every file there as a regression case (keep it once fixed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["connectors", "engage_streams", "tests.connectors"]):
    from connectors.envelopes import parse_classic, parse_platform
    from tests.connectors.delivery_invariant import check_parsed


def fuzz_one_body(data: bytes) -> None:
    for parse, endpoint in ((parse_classic, "engage"), (parse_platform, "ringcentral")):
        for forward_body in (False, True):
            check_parsed(parse, data, endpoint, forward_body)


def main() -> None:
    atheris.Setup(sys.argv, fuzz_one_body)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
