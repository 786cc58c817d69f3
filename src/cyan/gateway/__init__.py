"""The device gateway: asyncio TCP server around the sans-I/O protocol core."""

from cyan.gateway.server import Gateway

__all__ = ["Gateway"]
