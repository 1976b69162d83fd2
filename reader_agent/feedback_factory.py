"""Builds the feedback `rollcall-reader run` gives from the `feedback` and `[gpio]` settings."""

from pathlib import Path
from typing import Final, Protocol, TextIO

from reader_agent.config import GpioOptions, ReaderSettings
from reader_agent.errors import ConfigError, FeedbackError
from reader_agent.feedback import ConsoleFeedback, Feedback
from reader_agent.feedback_gpio import BuzzerFeedback, Pin, SysfsPin

# Long enough for the longest pattern (one 0.6 s beep) to finish before the pins go off.
_LAST_PATTERN_SECONDS: Final = 1.0


class PinOpener(Protocol):
    """Claims one GPIO line as an output; `SysfsPin` is the real one."""

    def __call__(self, number: int, *, active_low: bool, root: Path) -> Pin:
        """Open line `number`, off; raise FeedbackError if it cannot be claimed."""


def make_feedback(
    settings: ReaderSettings, *, stream: TextIO | None = None, open_pin: PinOpener = SysfsPin
) -> Feedback:
    """The configured feedback: console text, or console text plus a GPIO buzzer and LED.

    Raises FeedbackError naming the setting when a GPIO line cannot be claimed, so a
    terminal with a broken buzzer refuses to start rather than stay silent.
    Release what it opened with `close_feedback`.
    """
    console = ConsoleFeedback(stream)
    if settings.feedback == "console":
        return console
    gpio = settings.gpio
    if gpio.buzzer_pin is None:  # the settings refuse this; narrows the type
        raise ConfigError("feedback = 'gpio' needs gpio.buzzer_pin")
    buzzer = _claim(open_pin, gpio, "buzzer_pin", gpio.buzzer_pin)
    led = None
    if gpio.led_pin is not None:
        try:
            led = _claim(open_pin, gpio, "led_pin", gpio.led_pin)
        except FeedbackError:
            buzzer.close()
            raise
    return BuzzerFeedback(buzzer, led=led, console=console)


def close_feedback(feedback: Feedback) -> None:
    """Let the last pattern finish, then switch off and release the GPIO lines, if any."""
    if isinstance(feedback, BuzzerFeedback):
        feedback.wait_idle(_LAST_PATTERN_SECONDS)
        feedback.close()


def _claim(open_pin: PinOpener, gpio: GpioOptions, setting: str, number: int) -> Pin:
    try:
        return open_pin(number, active_low=gpio.active_low, root=gpio.sysfs_root)
    except FeedbackError as exc:
        raise FeedbackError(f"feedback = 'gpio', gpio.{setting} = {number}: {exc}") from exc
