"""Feedback to the person at the reader: the ack's display text and a signal."""

import abc
import sys
from enum import StrEnum
from typing import TextIO

from protocol import Ack, AckResult


class Signal(StrEnum):
    """The distinct signals a reader gives (buzzer pattern, LED colour)."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    UNKNOWN = "unknown"
    ERROR = "error"


def signal_for(result: AckResult) -> Signal:
    """Map an ack result to the signal the person should get."""
    if result is AckResult.ACCEPTED:
        return Signal.ACCEPTED
    if result is AckResult.DUPLICATE:
        return Signal.DUPLICATE
    if result is AckResult.UNKNOWN_CARD:
        return Signal.UNKNOWN
    return Signal.ERROR


class Feedback(abc.ABC):
    """Shows results to the person who tapped."""

    @abc.abstractmethod
    def card_seen(self, uid: str) -> None:
        """Acknowledge at once that a card was read (before the server answers)."""

    @abc.abstractmethod
    def show(self, ack: Ack) -> None:
        """Show the server's answer to a tap."""


class ConsoleFeedback(Feedback):
    """Prints results on a terminal; the default feedback."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def card_seen(self, uid: str) -> None:
        """Print that a card was read."""
        print(f"[card] {uid}", file=self._stream, flush=True)

    def show(self, ack: Ack) -> None:
        """Print the ack's title and lines with its signal."""
        signal = signal_for(ack.result)
        lines = " | ".join(ack.display.lines)
        text = f"[{signal.value}] {ack.display.title}"
        if lines:
            text += f" — {lines}"
        print(text, file=self._stream, flush=True)
