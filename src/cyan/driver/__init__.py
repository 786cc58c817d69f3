"""The one asyncio driver around the sans-I/O protocol core, and the process's timers.

Every user of the core runs a connection through ``Driver`` (an ``asyncio.Protocol``):
the gateway's device sessions, the virtual device, ``cyan doctor``, the benchmarks and
the tests. Timers of all connections share one ``Timers`` heap per process.
"""

from cyan.driver.connection import Core, Driver, Handler
from cyan.driver.keepalive import Keepalive, TimerGroup
from cyan.driver.timers import Timer, Timers, process_timers

__all__ = [
    "Core",
    "Driver",
    "Handler",
    "Keepalive",
    "Timer",
    "TimerGroup",
    "Timers",
    "process_timers",
]
