"""The simulated card source: taps from arguments, a script and a live stream."""

import io
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from protocol import CardTech
from reader_agent.errors import CardSourceError
from reader_agent.sources.base import CardPresentation
from reader_agent.sources.simulated import SimulatedSource, SleepStep, TapStep, parse_line


def cards(presentations: list[CardPresentation]) -> list[tuple[CardTech, str]]:
    return [(p.tech, p.uid) for p in presentations]


@pytest.mark.parametrize(
    ("line", "step"),
    [
        ("04A1B2C3D4", TapStep(CardTech.ISO14443A, "04A1B2C3D4")),
        ("04a1b2c3d4\n", TapStep(CardTech.ISO14443A, "04A1B2C3D4")),
        ("04:a1:b2:c3", TapStep(CardTech.ISO14443A, "04A1B2C3")),
        ("iso14443b 0123ABCD", TapStep(CardTech.ISO14443B, "0123ABCD")),
        ("  FeliCa   0102030405060708  ", TapStep(CardTech.FELICA, "0102030405060708")),
        ("04A1B2C3 # Zhang San's card", TapStep(CardTech.ISO14443A, "04A1B2C3")),
        ("sleep 0.5", SleepStep(0.5)),
        ("SLEEP 2", SleepStep(2.0)),
        ("", None),
        ("   \n", None),
        ("# a comment", None),
    ],
)
def test_script_lines(line: str, step: TapStep | SleepStep | None) -> None:
    assert parse_line(line) == step


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("04A1B", "bad UID"),
        ("XYZ123", "bad UID"),
        ("00" * 33, "bad UID"),
        ("mifare 04A1B2C3", "unknown card technology 'mifare'"),
        ("sleep", "sleep SECONDS"),
        ("sleep soon", "bad pause"),
        ("sleep -1", "bad pause"),
        ("sleep nan", "bad pause"),
        ("iso14443a 04A1 extra", "expected"),
    ],
)
def test_bad_script_lines(line: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_line(line)


def test_taps_from_arguments() -> None:
    source = SimulatedSource(["04A1B2C3", "iso14443b 0123ABCD"])
    presented = list(source.presentations(threading.Event()))
    assert cards(presented) == [
        (CardTech.ISO14443A, "04A1B2C3"),
        (CardTech.ISO14443B, "0123ABCD"),
    ]
    assert all(p.source == "simulated" for p in presented)
    assert all(p.seen_at.tzinfo is not None for p in presented)


def test_script_with_comments_pauses_and_a_bad_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = tmp_path / "taps.txt"
    script.write_text(
        "# morning session\n\n04A1B2C3\nsleep 0.05\nnot-a-card\niso14443b 0123ABCD\n",
        encoding="utf-8",
    )
    source = SimulatedSource(script=script)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        presented = list(source.presentations(threading.Event()))
    assert cards(presented) == [
        (CardTech.ISO14443A, "04A1B2C3"),
        (CardTech.ISO14443B, "0123ABCD"),
    ]
    assert time.monotonic() - started >= 0.05
    assert f"{script} line 5" in caplog.text
    assert "bad UID 'not-a-card'" in caplog.text


def test_arguments_then_script_then_stream(tmp_path: Path) -> None:
    script = tmp_path / "taps.txt"
    script.write_text("22222222\n", encoding="utf-8")
    source = SimulatedSource(["11111111"], script, io.StringIO("33333333\n"))
    uids = [p.uid for p in source.presentations(threading.Event())]
    assert uids == ["11111111", "22222222", "33333333"]


def test_stream_lines_are_presented_as_they_arrive() -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "r", encoding="utf-8") as stream:
        source = SimulatedSource(stream=stream)
        presentations = source.presentations(threading.Event())
        os.write(write_end, b"04A1B2C3\n")
        # The pipe is still open: the first tap must come without waiting for more.
        assert next(presentations).uid == "04A1B2C3"
        os.write(write_end, b"bad line\niso14443b 0123ABCD\n")
        assert next(presentations).uid == "0123ABCD"
        os.close(write_end)
        assert list(presentations) == []


def test_interval_spaces_taps_but_not_before_the_first() -> None:
    source = SimulatedSource(["11111111", "22222222", "33333333"], interval=0.05)
    started = time.monotonic()
    presentations = source.presentations(threading.Event())
    next(presentations)
    assert time.monotonic() - started < 0.04
    assert len(list(presentations)) == 2
    assert time.monotonic() - started >= 0.1


def test_stop_interrupts_a_pause() -> None:
    stop = threading.Event()
    source = SimulatedSource(["11111111", "sleep 30", "22222222"])
    presentations = source.presentations(stop)
    assert next(presentations).uid == "11111111"
    threading.Timer(0.05, stop.set).start()
    started = time.monotonic()
    assert list(presentations) == []
    assert time.monotonic() - started < 5


def test_stop_before_a_tap_ends_the_source() -> None:
    stop = threading.Event()
    stop.set()
    assert list(SimulatedSource(["11111111"]).presentations(stop)) == []


def test_missing_script_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(CardSourceError, match="does not exist"):
        SimulatedSource(script=tmp_path / "missing.txt")


def test_script_that_is_not_text_is_a_source_error(tmp_path: Path) -> None:
    script = tmp_path / "taps.bin"
    script.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CardSourceError, match="cannot be read"):
        list(SimulatedSource(script=script).presentations(threading.Event()))


def test_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        SimulatedSource(interval=-1)
