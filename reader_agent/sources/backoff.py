"""Growing pauses between attempts to reach a device or daemon that went away."""


class Backoff:
    """Doubles the pause after each failure up to a ceiling; `reset()` after a success."""

    def __init__(self, first: float = 0.25, ceiling: float = 10.0) -> None:
        if first <= 0 or ceiling < first:
            raise ValueError("backoff needs 0 < first <= ceiling")
        self._first = first
        self._ceiling = ceiling
        self._next = first

    def next_delay(self) -> float:
        """The pause to take now; the one after it will be twice as long, up to the ceiling."""
        delay = self._next
        self._next = min(self._next * 2, self._ceiling)
        return delay

    def reset(self) -> None:
        """Start again from the first, short pause."""
        self._next = self._first
