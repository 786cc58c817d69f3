"""The Spark protocol, sans-I/O: bytes in, typed events out, for both ends.

No sockets, no asyncio, no clock of its own: callers inject randomness and time.
"""

from cyan.protocol.device import DeviceConnection
from cyan.protocol.errors import NoTokenFree, ProtocolError, Stage
from cyan.protocol.server import ServerConnection

__all__ = ["DeviceConnection", "NoTokenFree", "ProtocolError", "ServerConnection", "Stage"]
