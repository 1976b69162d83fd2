"""Buzzer and LED feedback through GPIO pins, on top of the console feedback.

Each signal has its own rhythm so a person can tell the outcome without looking:
accepted one short beep, duplicate two short beeps, unknown card one long beep,
error three short beeps. Patterns play on a background thread so the agent
never waits for a buzzer; a newer signal replaces one still waiting to play.
"""

import abc
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocol import Ack
from reader_agent.errors import FeedbackError
from reader_agent.feedback import ConsoleFeedback, Feedback, Signal, signal_for

log = logging.getLogger(__name__)

SYSFS_GPIO = Path("/sys/class/gpio")


class Pin(abc.ABC):
    """One digital output: a buzzer or an LED."""

    @abc.abstractmethod
    def set(self, on: bool) -> None:
        """Drive the output on (buzzer sounds, LED lights) or off."""

    def close(self) -> None:  # noqa: B027 - optional hook, a recording pin holds nothing
        """Turn the output off and release it."""


class RecordingPin(Pin):
    """A pin that remembers every state it was driven to; for tests and dry runs."""

    def __init__(self) -> None:
        self.states: list[bool] = []
        self.closed = False

    def set(self, on: bool) -> None:
        """Record the new state."""
        self.states.append(on)

    def close(self) -> None:
        """Record that the pin was released."""
        self.closed = True


class SysfsPin(Pin):
    """A GPIO line through the kernel's sysfs interface (/sys/class/gpio/gpioN).

    `number` is the kernel's GPIO number: on Raspberry Pi OS Bookworm the header's
    GPIO n is 512 + n (see `cat /sys/kernel/debug/gpio`).
    """

    def __init__(self, number: int, *, active_low: bool = False, root: Path = SYSFS_GPIO) -> None:
        if not root.is_dir():
            raise FeedbackError(
                f"no GPIO on this machine ({root} does not exist); "
                "turn the buzzer off in reader.toml or run on a board with GPIO"
            )
        self._line = root / f"gpio{number}"
        self._number = number
        try:
            if not self._line.exists():
                (root / "export").write_text(f"{number}\n")
            (self._line / "direction").write_text("low\n")  # output, starting off
            (self._line / "active_low").write_text("1\n" if active_low else "0\n")
        except OSError as exc:
            raise FeedbackError(
                f"cannot claim GPIO {number} through {root}: {exc} "
                "(is the agent's user in the gpio group?)"
            ) from exc

    def set(self, on: bool) -> None:
        """Write 1 or 0 to the line's value file."""
        try:
            (self._line / "value").write_text("1\n" if on else "0\n")
        except OSError as exc:
            raise FeedbackError(f"cannot drive GPIO {self._number}: {exc}") from exc

    def close(self) -> None:
        """Switch the line off; it stays exported for the next start."""
        try:
            (self._line / "value").write_text("0\n")
        except OSError:
            log.debug("could not switch GPIO %d off", self._number, exc_info=True)


@dataclass(frozen=True)
class Step:
    """Hold the output on or off for some seconds."""

    on: bool
    seconds: float


def _beeps(count: int, length: float, gap: float = 0.08) -> tuple[Step, ...]:
    steps: list[Step] = []
    for index in range(count):
        if index:
            steps.append(Step(False, gap))
        steps.append(Step(True, length))
    return (*steps, Step(False, 0.0))


PATTERNS: dict[Signal, tuple[Step, ...]] = {
    Signal.ACCEPTED: _beeps(1, 0.12),
    Signal.DUPLICATE: _beeps(2, 0.08),
    Signal.UNKNOWN: _beeps(1, 0.6),
    Signal.ERROR: _beeps(3, 0.08),
}


class BuzzerFeedback(Feedback):
    """Plays a buzzer pattern per signal (and lights an LED while a card is handled)."""

    def __init__(
        self,
        buzzer: Pin,
        *,
        led: Pin | None = None,
        console: Feedback | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._buzzer = buzzer
        self._led = led
        self._console = console or ConsoleFeedback()
        self._sleep = sleep
        self._queue: queue.Queue[tuple[Step, ...] | None] = queue.Queue()
        self._pending = 0  # patterns queued or playing
        self._changed = threading.Condition()
        self._worker = threading.Thread(target=self._play_forever, name="buzzer", daemon=True)
        self._worker.start()

    def card_seen(self, uid: str) -> None:
        """Print the card and light the LED until the server's answer arrives."""
        self._console.card_seen(uid)
        if self._led is not None:
            self._drive(self._led, True)

    def show(self, ack: Ack) -> None:
        """Print the answer and queue the pattern of its signal."""
        self._console.show(ack)
        self.signal(signal_for(ack.result))

    def signal(self, signal: Signal) -> None:
        """Queue the pattern of `signal`, dropping any pattern not yet started."""
        with self._changed:
            self._drain()
            self._pending += 1
            self._queue.put(PATTERNS[signal])

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every queued pattern has played; True if it did in time."""
        with self._changed:
            return self._changed.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Stop the player, switch everything off and release the pins."""
        with self._changed:
            self._drain()
        self._queue.put(None)
        self._worker.join(timeout=5)
        for pin in (self._buzzer, self._led):
            if pin is not None:
                self._drive(pin, False)
                pin.close()

    def _drain(self) -> None:
        # Called with self._changed held.
        while True:
            try:
                dropped = self._queue.get_nowait()
            except queue.Empty:
                return
            if dropped is not None:
                self._pending -= 1
                self._changed.notify_all()

    def _play_forever(self) -> None:
        while True:
            pattern = self._queue.get()
            if pattern is None:
                return
            for step in pattern:
                self._drive(self._buzzer, step.on)
                if self._led is not None:
                    self._drive(self._led, step.on)
                if step.seconds:
                    self._sleep(step.seconds)
            with self._changed:
                self._pending -= 1
                self._changed.notify_all()

    def _drive(self, pin: Pin, on: bool) -> None:
        # A buzzer that fails must not take the agent down: the text still shows.
        try:
            pin.set(on)
        except FeedbackError as exc:
            log.warning("feedback output failed: %s", exc)
