"""Buzzer patterns per signal, LED handling, and the sysfs GPIO pin."""

import io
import uuid
from pathlib import Path

import pytest

from protocol import Ack, AckResult, Display
from reader_agent.errors import FeedbackError
from reader_agent.feedback import ConsoleFeedback, Signal
from reader_agent.feedback_gpio import PATTERNS, BuzzerFeedback, Pin, RecordingPin, Step, SysfsPin


def ack(result: AckResult) -> Ack:
    display = Display(title="签到成功", lines=["+2"])
    return Ack(event_id=uuid.uuid4(), result=result, display=display)


def beeps(pattern: tuple[Step, ...]) -> list[float]:
    return [step.seconds for step in pattern if step.on]


class Recorder:
    """Collects the sleeps a pattern asks for instead of waiting them out."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def test_every_signal_has_its_own_rhythm() -> None:
    rhythms = {signal: tuple(beeps(PATTERNS[signal])) for signal in Signal}
    assert len(set(rhythms.values())) == len(Signal)
    assert rhythms[Signal.ACCEPTED] == (0.12,)
    assert rhythms[Signal.DUPLICATE] == (0.08, 0.08)
    assert rhythms[Signal.UNKNOWN] == (0.6,)
    assert rhythms[Signal.ERROR] == (0.08, 0.08, 0.08)


def test_every_pattern_ends_with_the_buzzer_off() -> None:
    for pattern in PATTERNS.values():
        assert pattern[-1] == Step(False, 0.0)


@pytest.mark.parametrize(
    ("result", "states"),
    [
        (AckResult.ACCEPTED, [True, False]),
        (AckResult.DUPLICATE, [True, False, True, False]),
        (AckResult.UNKNOWN_CARD, [True, False]),
        (AckResult.NO_SESSION, [True, False, True, False, True, False]),
    ],
)
def test_show_drives_the_buzzer_with_the_signals_pattern(
    result: AckResult, states: list[bool]
) -> None:
    buzzer, sleep, text = RecordingPin(), Recorder(), io.StringIO()
    feedback = BuzzerFeedback(buzzer, console=ConsoleFeedback(text), sleep=sleep)
    feedback.show(ack(result))
    assert feedback.wait_idle()
    feedback.close()
    assert buzzer.states[: len(states)] == states
    assert sleep.sleeps == [step.seconds for step in PATTERNS[_signal(result)] if step.seconds]
    assert "签到成功 — +2" in text.getvalue()
    assert buzzer.closed


def _signal(result: AckResult) -> Signal:
    return {
        AckResult.ACCEPTED: Signal.ACCEPTED,
        AckResult.DUPLICATE: Signal.DUPLICATE,
        AckResult.UNKNOWN_CARD: Signal.UNKNOWN,
    }.get(result, Signal.ERROR)


def test_led_lights_when_a_card_is_seen_and_follows_the_pattern() -> None:
    buzzer, led, text = RecordingPin(), RecordingPin(), io.StringIO()
    feedback = BuzzerFeedback(buzzer, led=led, console=ConsoleFeedback(text), sleep=Recorder())
    feedback.card_seen("04A1B2C3D4E5F6")
    assert led.states == [True]
    feedback.show(ack(AckResult.ACCEPTED))
    assert feedback.wait_idle()
    feedback.close()
    assert led.states[-1] is False
    assert "[card] 04A1B2C3D4E5F6" in text.getvalue()


class BrokenPin(Pin):
    """A pin whose driver fails, as a GPIO line that vanished would."""

    def set(self, on: bool) -> None:
        raise FeedbackError("cannot drive GPIO 17: [Errno 19] No such device")


def test_a_failing_buzzer_is_logged_and_the_text_still_shows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = io.StringIO()
    feedback = BuzzerFeedback(BrokenPin(), console=ConsoleFeedback(text), sleep=Recorder())
    feedback.show(ack(AckResult.ACCEPTED))
    assert feedback.wait_idle()
    feedback.close()
    assert "签到成功" in text.getvalue()
    assert "feedback output failed: cannot drive GPIO 17" in caplog.text


def test_sysfs_pin_without_gpio_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FeedbackError, match="no GPIO on this machine"):
        SysfsPin(17, root=tmp_path / "no-gpio-here")


def test_sysfs_pin_writes_the_kernel_files(tmp_path: Path) -> None:
    # A directory laid out like /sys/class/gpio with line 17 already exported.
    line = tmp_path / "gpio17"
    line.mkdir()
    pin = SysfsPin(17, active_low=True, root=tmp_path)
    assert (line / "direction").read_text() == "low\n"
    assert (line / "active_low").read_text() == "1\n"
    pin.set(True)
    assert (line / "value").read_text() == "1\n"
    pin.close()
    assert (line / "value").read_text() == "0\n"


def test_sysfs_pin_that_cannot_be_exported_says_why(tmp_path: Path) -> None:
    (tmp_path / "export").mkdir()  # writing to it fails like a refused export
    with pytest.raises(FeedbackError, match="cannot claim GPIO 17"):
        SysfsPin(17, root=tmp_path)
