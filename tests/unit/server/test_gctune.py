"""settle_heap: start-up objects leave the collector, young ones are collected less often."""

import gc
from collections.abc import Iterator

import pytest

from server.gctune import GEN0_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_settle_heap_freezes_what_start_up_made_and_raises_the_young_threshold(
    restored_gc: None,
) -> None:
    start_up = [[] for _ in range(1000)]  # tracked containers, alive since "start-up"
    _, gen1, gen2 = gc.get_threshold()

    settle_heap()

    assert gc.get_freeze_count() >= len(start_up)
    assert gc.get_threshold() == (GEN0_THRESHOLD, gen1, gen2)


def test_garbage_cycles_made_after_settling_are_still_collected(restored_gc: None) -> None:
    settle_heap()

    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b

    assert gc.collect() >= 2
