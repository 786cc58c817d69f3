"""node.tune_gc_for_serving, in a process of its own (it changes the collector for good)."""

from __future__ import annotations

import subprocess
import sys

from cyan.node import YOUNG_COLLECTION_EVERY

PROBE = """
import gc
from cyan.node import tune_gc_for_serving
before = gc.get_freeze_count()
tune_gc_for_serving()
print(gc.get_threshold()[0], gc.get_freeze_count() - before)
"""


def test_serving_freezes_the_start_up_heap_and_collects_the_young_less_often() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    threshold, frozen = map(int, done.stdout.split())
    assert threshold == YOUNG_COLLECTION_EVERY > 700
    assert frozen > 10_000  # the imported modules, FastAPI's and SQLAlchemy's objects
