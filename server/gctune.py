"""The cyclic garbage collector's settings for the long-running server processes.

With CPython's defaults the ingest spent about a quarter of its CPU in the
cyclic collector (bench/tapstorm.py, PostgreSQL, quick run, `gc.callbacks`
timing: 6.1 s of 22 s): every batch allocates tens of thousands of short-lived
objects, so a young-generation collection ran every 700 allocations, and each
full collection walked every object alive since start-up (modules, SQLAlchemy's
compiled statements, pydantic's schemas) although none of them ever becomes
garbage. Freezing what start-up made moves it out of every later collection;
collecting the young generation every 2,000 allocations instead of 700 leaves
cycles for a batch or so longer. Measured together (with 20,000): ingest CPU
per tap at saturation 200 -> 139-154 µs, peak RSS unchanged (257 MiB). Most of
our garbage is freed by reference counting anyway; the collector is only for
cycles.

The threshold bounds each pause as well, and a pause stalls every tap waiting
on the ingest's one thread: at 20,000, `gc.callbacks` timed young collections at
6 ms typically and up to 54 ms under the 5,000 taps/s load; at 2,000, under
2 ms. Full tap storm, PostgreSQL, one worker, 5,000 taps/s offered: p50/p99
252/682 ms at 20,000, 50/214 ms at 2,000; CPU per tap at saturation 119 and
136 µs (one run each; runs of one setting vary by ±15 %).
"""

import gc
from typing import Final

GEN0_THRESHOLD: Final = 2_000


def settle_heap() -> None:
    """Once start-up is done: collect, freeze the survivors, collect young objects less often."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
