"""Does a Kafka broker answer? A two-request check on the wire (ApiVersions, then Metadata).

Used to tell a broker that has finished starting from one that merely bound its port; speaks
just enough of the Kafka protocol for that, with the standard library only.
"""

from __future__ import annotations

import socket
import struct


def broker_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when a Kafka broker on host:port answers ApiVersions and a Metadata request
    listing at least one broker (i.e. it has finished starting, not merely bound its port)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            versions = _api_versions(sock)
            low, high = versions.get(_METADATA, (0, -1))
            version = max(low, 4)
            if version > min(high, 8):
                return True  # no Metadata version we can speak; ApiVersions answered
            body = struct.pack(">ib", -1, 0) + (b"\x00\x00" if version >= 8 else b"")
            reply = _exchange(sock, _METADATA, version, 2, body)
            (brokers,) = struct.unpack_from(">i", reply, 4)  # after throttle_time_ms
            return bool(brokers > 0)
    except (OSError, struct.error, ValueError):
        return False


_API_VERSIONS = 18
_METADATA = 3


def _api_versions(sock: socket.socket) -> dict[int, tuple[int, int]]:
    reply = _exchange(sock, _API_VERSIONS, 0, 1, b"")
    error, count = struct.unpack_from(">hi", reply, 0)
    if error != 0:
        raise ValueError(f"ApiVersions error {error}")
    out = {}
    for i in range(count):
        key, low, high = struct.unpack_from(">hhh", reply, 6 + 6 * i)
        out[key] = (low, high)
    return out


def _exchange(sock: socket.socket, api: int, version: int, correlation: int, body: bytes) -> bytes:
    client = b"engage-streams-probe"
    header = struct.pack(">hhih", api, version, correlation, len(client)) + client
    request = header + body
    sock.sendall(struct.pack(">i", len(request)) + request)
    (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
    payload = _recv_exactly(sock, size)
    (got,) = struct.unpack_from(">i", payload, 0)
    if got != correlation:
        raise ValueError("correlation id mismatch")
    return payload[4:]


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise OSError("connection closed by the broker")
        chunks += chunk
    return bytes(chunks)
