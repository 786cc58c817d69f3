"""The device gateway: asyncio TCP server around the sans-I/O protocol core."""

from cyan.gateway.server import ConnectionFailure, Gateway

__all__ = ["ConnectionFailure", "Gateway"]
