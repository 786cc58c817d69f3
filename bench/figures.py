"""Numbers and tables for the benchmarks: fd limits, percentiles, CPU meters, RSS."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, TypeVar, cast

import psutil
from rich.console import Console
from rich.table import Table

HOST = "127.0.0.1"
T = TypeVar("T")
clock = time.perf_counter
console = Console(highlight=False)
if not console.is_terminal and console.width < 120:
    console.width = 120  # piped output: tables in full width, not folded at 80 columns

# -- the process environment ----------------------------------------------------------------


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# "asyncio" runs every process of a benchmark on asyncio's own loop, as `cyan serve` does
# when uvloop (the `fast` extra) is not installed; children inherit it.
LOOP_ENV = "CYAN_BENCH_LOOP"


def use_loop(name: str) -> None:
    os.environ[LOOP_ENV] = name


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (as ``cyan serve`` does), else on asyncio's loop."""
    if os.environ.get(LOOP_ENV) == "asyncio":
        return asyncio.run(coroutine)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    factory = cast(Callable[[], asyncio.AbstractEventLoop], uvloop.new_event_loop)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coroutine)


async def paced(rate: float, count: int) -> AsyncIterator[int]:
    """0 … count − 1, each no earlier than its due time (start + index / rate): an open
    loop's schedule. One that falls due late comes at once; none is skipped."""
    start = clock()
    for index in range(count):
        if (wait := start + index / rate - clock()) > 0:
            await asyncio.sleep(wait)
        yield index


def loop_name() -> str:
    if os.environ.get(LOOP_ENV) == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


# -- numbers ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of unsorted values; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> str:
    return "–" if math.isnan(seconds) else f"{seconds * 1e3:.2f} ms"


def kib(byte_count: float) -> str:
    return "–" if math.isnan(byte_count) else f"{byte_count / 1024:.2f} KiB"


def mib(byte_count: float) -> str:
    return f"{byte_count / (1 << 20):.1f} MiB"


def ratio(measured: float, baseline: float, unit: str = "×") -> str:
    if math.isnan(measured) or math.isnan(baseline) or baseline == 0:
        return "–"
    if unit == "%":
        return f"{100 * measured / baseline:.1f} %"
    return f"{measured / baseline:.2f}×"


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def summary(line: str) -> None:
    console.print(f"[bold]{line}[/]")


class CpuMeter:
    """CPU seconds a process used between ``start()`` and ``stop()``, and its share of wall;
    with ``children``, its descendants' too (a node's RSA workers), each counted once."""

    def __init__(self, *pids: int, children: bool = False) -> None:
        self._processes = [psutil.Process(pid) for pid in pids]
        self._children = children
        self._cpu0 = 0.0
        self._wall0 = 0.0
        self.cpu_s = math.nan
        self.wall_s = math.nan

    def _cpu(self) -> float:
        processes = {process.pid: process for process in self._processes}
        if self._children:
            for parent in self._processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    processes.update((c.pid, c) for c in parent.children(recursive=True))
        total = 0.0
        for process in processes.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def start(self) -> None:
        self._cpu0, self._wall0 = self._cpu(), clock()

    def stop(self) -> None:
        self.cpu_s, self.wall_s = self._cpu() - self._cpu0, clock() - self._wall0

    @property
    def share(self) -> str:
        if math.isnan(self.cpu_s) or not self.wall_s:
            return "–"
        return f"{100 * self.cpu_s / self.wall_s:.0f} %"


class OtherLoad:
    """CPU that processes other than ours used meanwhile: figures are only sound near zero.

    The machine has 2 cores, one for the server and one for the load; anything else
    running (a test suite, a build) takes from one of them.
    """

    WARN_SHARE = 0.15

    def __init__(self, pids: Sequence[int]) -> None:
        self._ours = CpuMeter(*pids, children=True)
        self._busy0 = 0.0
        self._wall0 = 0.0
        self.share = math.nan  # of one core

    @staticmethod
    def _busy() -> float:
        times = psutil.cpu_times()
        return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))

    def start(self) -> None:
        self._ours.start()
        self._busy0, self._wall0 = self._busy(), clock()

    def stop(self) -> None:
        busy, wall = self._busy() - self._busy0, clock() - self._wall0
        self._ours.stop()
        ours = self._ours.cpu_s
        self.share = max(0.0, busy - ours) / wall if wall else math.nan

    @property
    def text(self) -> str:
        return "–" if math.isnan(self.share) else f"{100 * self.share:.0f} % of a core"

    def warn(self) -> None:
        if self.share > self.WARN_SHARE:
            console.print(
                f"[yellow]other processes used {self.text} during the measurement: "
                "the figures understate what Cyan does on a quiet machine[/]"
            )


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


# -- child processes --------------------------------------------------------------------------

ControlHandler = Callable[[], object]
