"""Choosing the feedback from the settings, and GPIO lines that cannot be claimed."""

import io
import uuid
from pathlib import Path

import pytest

from protocol import Ack, AckResult, Display
from reader_agent.config import load_settings
from reader_agent.errors import FeedbackError
from reader_agent.feedback import ConsoleFeedback
from reader_agent.feedback_factory import close_feedback, make_feedback
from reader_agent.feedback_gpio import BuzzerFeedback, Pin, RecordingPin


class RecordingOpener:
    """Hands out recording pins and remembers how each line was asked for."""

    def __init__(self, *, refuse: int | None = None) -> None:
        self.pins: dict[int, RecordingPin] = {}
        self.requests: list[tuple[int, bool, Path]] = []
        self._refuse = refuse

    def __call__(self, number: int, *, active_low: bool, root: Path) -> Pin:
        self.requests.append((number, active_low, root))
        if number == self._refuse:
            raise FeedbackError(f"cannot claim GPIO {number} through {root}: busy")
        pin = RecordingPin()
        self.pins[number] = pin
        return pin


def accepted() -> Ack:
    return Ack(event_id=uuid.uuid4(), result=AckResult.ACCEPTED, display=Display(title="签到成功"))


def test_console_is_the_default_and_opens_no_pin() -> None:
    opener, text = RecordingOpener(), io.StringIO()
    feedback = make_feedback(load_settings(None, id="door-1"), stream=text, open_pin=opener)
    assert isinstance(feedback, ConsoleFeedback)
    feedback.card_seen("04A1B2C3")
    close_feedback(feedback)
    assert text.getvalue() == "[card] 04A1B2C3\n"
    assert opener.requests == []


def test_gpio_feedback_claims_the_configured_lines_and_beeps() -> None:
    settings = load_settings(
        None,
        id="door-1",
        feedback="gpio",
        gpio={"buzzer_pin": 529, "led_pin": 539, "active_low": True, "sysfs_root": "/gpio"},
    )
    opener, text = RecordingOpener(), io.StringIO()
    feedback = make_feedback(settings, stream=text, open_pin=opener)
    assert isinstance(feedback, BuzzerFeedback)
    assert opener.requests == [(529, True, Path("/gpio")), (539, True, Path("/gpio"))]
    feedback.card_seen("04A1B2C3")
    feedback.show(accepted())
    close_feedback(feedback)
    buzzer, led = opener.pins[529], opener.pins[539]
    # The accepted pattern played in full before the lines were switched off and released.
    assert buzzer.states == [True, False, False]
    assert led.states == [True, True, False, False]
    assert buzzer.closed
    assert led.closed
    assert text.getvalue() == "[card] 04A1B2C3\n[accepted] 签到成功\n"


def test_gpio_feedback_without_an_led_drives_only_the_buzzer() -> None:
    settings = load_settings(None, id="door-1", feedback="gpio", gpio={"buzzer_pin": 17})
    opener = RecordingOpener()
    feedback = make_feedback(settings, stream=io.StringIO(), open_pin=opener)
    close_feedback(feedback)
    assert list(opener.pins) == [17]
    assert opener.pins[17].closed


def test_an_led_that_cannot_be_claimed_names_it_and_releases_the_buzzer() -> None:
    settings = load_settings(
        None, id="door-1", feedback="gpio", gpio={"buzzer_pin": 17, "led_pin": 27}
    )
    opener = RecordingOpener(refuse=27)
    with pytest.raises(FeedbackError, match=r"^feedback = 'gpio', gpio.led_pin = 27: cannot claim"):
        make_feedback(settings, stream=io.StringIO(), open_pin=opener)
    assert opener.pins[17].closed


def test_a_machine_without_gpio_is_a_clear_error(tmp_path: Path) -> None:
    # The real sysfs pin, pointed at a directory that does not exist.
    settings = load_settings(
        None,
        id="door-1",
        feedback="gpio",
        gpio={"buzzer_pin": 17, "sysfs_root": str(tmp_path / "no-gpio")},
    )
    with pytest.raises(FeedbackError, match=r"gpio.buzzer_pin = 17: no GPIO on this machine"):
        make_feedback(settings, stream=io.StringIO())


def test_the_real_sysfs_pin_is_used_by_default(tmp_path: Path) -> None:
    (tmp_path / "gpio17").mkdir()  # laid out like /sys/class/gpio with line 17 exported
    settings = load_settings(
        None,
        id="door-1",
        feedback="gpio",
        gpio={"buzzer_pin": 17, "active_low": True, "sysfs_root": str(tmp_path)},
    )
    feedback = make_feedback(settings, stream=io.StringIO())
    close_feedback(feedback)
    assert (tmp_path / "gpio17" / "active_low").read_text() == "1\n"
    assert (tmp_path / "gpio17" / "value").read_text() == "0\n"
