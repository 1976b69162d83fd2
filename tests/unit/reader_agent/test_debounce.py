"""Debouncer: one card within the window is one tap; memory stays bounded."""

import pytest

from protocol import CardTech
from reader_agent.debounce import Debouncer


class Ticker:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


A = CardTech.ISO14443A


def test_first_sighting_is_a_tap_and_a_quick_repeat_is_not() -> None:
    clock = Ticker()
    debouncer = Debouncer(3.0, clock)
    assert debouncer.accept(A, "04A1B2C3")
    clock.now += 1.0
    assert not debouncer.accept(A, "04A1B2C3")


def test_card_seen_again_after_the_window_is_a_new_tap() -> None:
    clock = Ticker()
    debouncer = Debouncer(3.0, clock)
    assert debouncer.accept(A, "04A1B2C3")
    clock.now += 3.0
    assert debouncer.accept(A, "04A1B2C3")


def test_window_slides_while_the_card_keeps_being_seen() -> None:
    clock = Ticker()
    debouncer = Debouncer(3.0, clock)
    assert debouncer.accept(A, "04A1B2C3")
    for _ in range(5):  # a card lying on the reader, re-read every 2 s
        clock.now += 2.0
        assert not debouncer.accept(A, "04A1B2C3")


def test_different_cards_and_technologies_are_separate() -> None:
    clock = Ticker()
    debouncer = Debouncer(3.0, clock)
    assert debouncer.accept(A, "04A1B2C3")
    assert debouncer.accept(A, "04A1B2C4")
    assert debouncer.accept(CardTech.ISO14443B, "04A1B2C3")


def test_uid_case_does_not_matter() -> None:
    debouncer = Debouncer(3.0, Ticker())
    assert debouncer.accept(A, "04a1b2c3")
    assert not debouncer.accept(A, "04A1B2C3")


def test_zero_window_accepts_everything_and_remembers_nothing() -> None:
    debouncer = Debouncer(0.0, Ticker())
    assert debouncer.accept(A, "04A1B2C3")
    assert debouncer.accept(A, "04A1B2C3")
    assert len(debouncer) == 0


def test_memory_holds_only_cards_seen_within_the_window() -> None:
    clock = Ticker()
    debouncer = Debouncer(3.0, clock)
    for n in range(1000):
        debouncer.accept(A, f"{n:08X}")
        clock.now += 0.01
    assert len(debouncer) == 300  # the last 3 s worth
    clock.now += 3.0
    debouncer.accept(A, "FFFFFFFF")
    assert len(debouncer) == 1


def test_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        Debouncer(-1.0, Ticker())
