"""Free TCP ports on 127.0.0.1 for the local broker, the demo and the tests (one definition).

Ports are taken below Linux's ephemeral range: a port the kernel hands out for ``bind(0)`` is
soon reused as the source port of some outgoing connection, so it must never be used here.
"""

from __future__ import annotations

import random
import socket


class NoFreePort(RuntimeError):
    """No free port was found in the range."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Taken below Linux's ephemeral range (32768-60999): a port the kernel hands out for
    ``bind(0)`` is soon reused as the source port of some outgoing connection (Kafka clients
    open many), and a server started on it a moment later would find it taken.
    """
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32768)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise NoFreePort("no free TCP port found in 20000-32767")


def port_is_free(port: int) -> bool:
    """True when nothing listens on (or holds) ``port`` on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
