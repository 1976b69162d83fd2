"""Debouncing: one card seen again and again within a short window is one tap."""

import time
from collections import OrderedDict
from collections.abc import Callable

from protocol import CardTech


class Debouncer:
    """Decides whether a card presentation is a new tap or a repeat of the last one.

    A card is a repeat while it is seen again within `window_seconds` of its
    previous sighting, so a card that flickers in and out of the field (or lies
    on the reader and is re-read) stays one tap for as long as it keeps being
    seen. Memory is bounded by the cards seen within the last window.
    """

    def __init__(self, window_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if window_seconds < 0:
            raise ValueError("window_seconds must be >= 0")
        self._window = window_seconds
        self._clock = clock
        # Ordered by last sighting, oldest first, so expiry pops from the front.
        self._last_seen: OrderedDict[tuple[CardTech, str], float] = OrderedDict()

    def accept(self, tech: CardTech, uid: str) -> bool:
        """Record a sighting; True if it is a new tap, False if it repeats a recent one."""
        now = self._clock()
        self._forget_before(now - self._window)
        if self._window == 0:
            return True
        key = (tech, uid.upper())
        repeat = key in self._last_seen
        self._last_seen[key] = now
        self._last_seen.move_to_end(key)
        return not repeat

    def __len__(self) -> int:
        """How many cards are remembered (those seen within the window)."""
        return len(self._last_seen)

    def _forget_before(self, cutoff: float) -> None:
        while self._last_seen:
            key, seen = next(iter(self._last_seen.items()))
            if seen > cutoff:
                return
            del self._last_seen[key]
