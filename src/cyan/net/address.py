"""A server given as HOST[:PORT], the way a key image or a user names it."""

from __future__ import annotations

from cyan.protocol.keys import DEFAULT_SERVER_PORT


def parse_server(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or (host.endswith(":") and not host.startswith("[")):
        return text.strip("[]"), DEFAULT_SERVER_PORT
    return host.strip("[]"), int(port)
