"""The simulated card source: taps from arguments, a script file or a live stream (stdin).

Script grammar, one step per line:

    04A1B2C3D4            a tap of that UID (hex; iso14443a)
    iso14443b 0123ABCD    a tap with an explicit technology
    sleep 0.5             a pause, in seconds
    # a comment           ignored, as are blank lines and text after '#'

A bad line is logged with where it came from and skipped; the source never
stops because of one.
"""

import logging
import math
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from protocol import CardTech
from reader_agent.errors import CardSourceError
from reader_agent.sources.base import CardPresentation, CardSource

log = logging.getLogger(__name__)

_UID: Final = re.compile(r"(?:[0-9A-F]{2}){1,32}")
_TECHS: Final = ", ".join(tech.value for tech in CardTech)


@dataclass(frozen=True)
class TapStep:
    """Present a card."""

    tech: CardTech
    uid: str


@dataclass(frozen=True)
class SleepStep:
    """Pause before the next step."""

    seconds: float


Step = TapStep | SleepStep


def _uid(text: str) -> str:
    # Colons are how many NFC tools print UIDs (04:A1:B2:...); accept them.
    uid = text.replace(":", "").upper()
    if not _UID.fullmatch(uid):
        raise ValueError(f"bad UID {text!r}: need 1-32 bytes as hex digits")
    return uid


def parse_line(text: str) -> Step | None:
    """Parse one script line: a Step, None for a blank or comment line; ValueError if bad."""
    words = text.split("#", 1)[0].split()
    if not words:
        return None
    if words[0].lower() == "sleep":
        if len(words) != 2:
            raise ValueError("expected 'sleep SECONDS'")
        try:
            seconds = float(words[1])
        except ValueError:
            raise ValueError(f"bad pause {words[1]!r}: need a number of seconds") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"bad pause {words[1]!r}: need a number of seconds >= 0")
        return SleepStep(seconds)
    if len(words) == 1:
        return TapStep(CardTech.ISO14443A, _uid(words[0]))
    if len(words) == 2:
        try:
            tech = CardTech(words[0].lower())
        except ValueError:
            raise ValueError(f"unknown card technology {words[0]!r} (one of {_TECHS})") from None
        return TapStep(tech, _uid(words[1]))
    raise ValueError("expected 'UID', 'TECH UID' or 'sleep SECONDS'")


class SimulatedSource(CardSource):
    """Presents cards from a list, then a script file, then a stream, in that order.

    The stream is read line by line as lines arrive, so a test or a person can
    feed taps live through a pipe; the source ends when all inputs are used up
    (end of file on the stream). A read blocked on the stream cannot be
    interrupted by `stop`; the agent runs sources in a daemon thread for that.
    """

    name = "simulated"

    def __init__(
        self,
        taps: Sequence[str] = (),
        script: Path | None = None,
        stream: TextIO | None = None,
        *,
        interval: float = 0.0,
        reader_name: str = "simulated",
    ) -> None:
        if interval < 0 or not math.isfinite(interval):
            raise ValueError("interval must be a finite number of seconds >= 0")
        if script is not None and not script.is_file():
            raise CardSourceError(f"tap script {script} does not exist or is not a file")
        self._taps = list(taps)
        self._script = script
        self._stream = stream
        self._interval = interval
        self._reader_name = reader_name

    def presentations(self, stop: threading.Event) -> Iterator[CardPresentation]:
        """Yield a presentation per tap step, pausing as the script says."""
        tapped = False
        for origin, number, text in self._lines(stop):
            try:
                step = parse_line(text)
            except ValueError as exc:
                log.warning("%s line %d: %s; skipped", origin, number, exc)
                continue
            if isinstance(step, SleepStep):
                if stop.wait(step.seconds):
                    return
            elif isinstance(step, TapStep):
                if tapped and self._interval and stop.wait(self._interval):
                    return
                if stop.is_set():
                    return
                tapped = True
                yield CardPresentation(
                    tech=step.tech, uid=step.uid, source=self.name, reader_name=self._reader_name
                )

    def _lines(self, stop: threading.Event) -> Iterator[tuple[str, int, str]]:
        """(where, line number, text) of every input line, read lazily."""
        for number, text in enumerate(self._taps, start=1):
            yield "--tap", number, text
        if self._script is not None:
            try:
                with self._script.open(encoding="utf-8") as script:
                    for number, text in enumerate(script, start=1):
                        if stop.is_set():
                            return
                        yield str(self._script), number, text
            except (OSError, UnicodeDecodeError) as exc:
                raise CardSourceError(f"tap script {self._script} cannot be read: {exc}") from exc
        if self._stream is not None:
            # readline, not iteration: a file's iterator reads ahead in blocks, which
            # would hold back lines written to a pipe until the block fills.
            origin = str(getattr(self._stream, "name", "<stream>"))
            number = 0
            while not stop.is_set():
                text = self._stream.readline()
                if not text:
                    return
                number += 1
                yield origin, number, text
