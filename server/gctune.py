"""The cyclic garbage collector's settings for the long-running server processes.

With CPython's defaults the ingest spent about a quarter of its CPU in the
cyclic collector (bench/tapstorm.py, PostgreSQL, quick run, `gc.callbacks`
timing: 6.1 s of 22 s): every batch allocates tens of thousands of short-lived
objects, so a young-generation collection ran every 700 allocations, and each
full collection walked every object alive since start-up (modules, SQLAlchemy's
compiled statements, pydantic's schemas) although none of them ever becomes
garbage. Freezing what start-up made moves it out of every later collection;
collecting the young generation every 20,000 allocations instead of 700 leaves
cycles for a few batches longer. Measured together: ingest CPU per tap at
saturation 200 -> 139-154 µs, peak RSS unchanged (257 MiB). Most of our garbage
is freed by reference counting anyway; the collector is only for cycles.
"""

import gc
from typing import Final

GEN0_THRESHOLD: Final = 20_000


def settle_heap() -> None:
    """Once start-up is done: collect, freeze the survivors, collect young objects less often."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
