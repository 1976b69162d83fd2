"""settle_heap: start-up objects leave the collector, young ones are collected less often."""

import gc
import weakref
from collections.abc import Iterator

import pytest

from server.gctune import GEN0_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)
    gc.enable()


def test_settle_heap_freezes_what_start_up_made_and_raises_the_young_threshold(
    restored_gc: None,
) -> None:
    assert gc.get_freeze_count() == 0
    start_up = [[] for _ in range(1000)]  # tracked containers, alive since "start-up"
    _, gen1, gen2 = gc.get_threshold()

    settle_heap()

    assert gc.get_freeze_count() >= len(start_up)
    assert gc.get_threshold() == (GEN0_THRESHOLD, gen1, gen2)
    assert gc.isenabled()


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_cycles_made_after_settling_are_collected_without_being_asked(
    restored_gc: None,
) -> None:
    settle_heap()
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b

    # Allocation alone (no gc.collect()) must trigger a collection that frees the cycle:
    # net new tracked containers past the young generation's threshold.
    kept = [[] for _ in range(GEN0_THRESHOLD * 2)]
    assert gone() is None
    assert len(kept) == GEN0_THRESHOLD * 2
