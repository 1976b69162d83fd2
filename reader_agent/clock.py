"""Time for the agent: an injectable clock and a probe of whether the system clock is synced."""

import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Literal, Protocol

log = logging.getLogger(__name__)

TIMESYNCD_FLAG: Final = Path("/run/systemd/timesync/synchronized")
_COMMAND_TIMEOUT_SECONDS: Final = 2.0


class Clock(Protocol):
    """Wall-clock time (aware UTC) for timestamps and a monotonic clock for intervals."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never steps; only differences mean anything."""
        ...


class SystemClock:
    """The real clocks of this machine."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """`time.monotonic()`."""
        return time.monotonic()


class OffsetClock:
    """Another clock's wall time moved by a fixed offset; its monotonic clock unchanged.

    It stages a reader whose clock is wrong (tests, diagnosing skew) without
    touching the machine's clock.
    """

    def __init__(self, base: Clock, offset: timedelta) -> None:
        self._base = base
        self.offset = offset

    def now(self) -> datetime:
        """The base clock's time plus the offset."""
        return self._base.now() + self.offset

    def monotonic(self) -> float:
        """The base clock's monotonic time."""
        return self._base.monotonic()


def _timedatectl(output: str) -> bool | None:
    answer = output.strip().lower()
    return {"yes": True, "no": False}.get(answer)


def _chronyc(output: str) -> bool | None:
    for line in output.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "leap status":
            return value.strip().lower() != "not synchronised"
    return None


# Asked in order until one gives an answer. timedatectl reports the kernel's
# "synchronised" flag, so it also covers chrony and ntpd on systemd machines.
SYNC_COMMANDS: Final[tuple[tuple[tuple[str, ...], Callable[[str], bool | None]], ...]] = (
    (("timedatectl", "show", "-p", "NTPSynchronized", "--value"), _timedatectl),
    (("chronyc", "-n", "tracking"), _chronyc),
)


def run_quietly(argv: Sequence[str]) -> str | None:
    """Run a read-only system command; its stdout, or None if it is missing or fails."""
    executable = shutil.which(argv[0])
    if executable is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv from SYNC_COMMANDS, no shell
            [executable, *argv[1:]],
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("%s failed: %s", argv[0], exc)
        return None
    return done.stdout if done.returncode == 0 else None


class ClockSyncProbe:
    """Whether the system clock is NTP-synchronised, as configured or as detected.

    `synced` is a cached answer, cheap enough for the tap path; `refresh` does
    the probing (a file check, then at most a couple of short commands) and is
    called from the agent's housekeeping, never from the tap path. Probing
    never raises: anything unclear counts as not synced.
    """

    def __init__(
        self,
        setting: Literal["auto"] | bool,
        *,
        flag_file: Path = TIMESYNCD_FLAG,
        commands: Sequence[tuple[Sequence[str], Callable[[str], bool | None]]] = SYNC_COMMANDS,
        run: Callable[[Sequence[str]], str | None] = run_quietly,
    ) -> None:
        self._setting = setting
        self._flag_file = flag_file
        self._commands = commands
        self._run = run
        self._synced = setting if isinstance(setting, bool) else False

    @property
    def synced(self) -> bool:
        """The last known answer."""
        return self._synced

    def refresh(self) -> bool:
        """Probe again (unless fixed by configuration) and return the answer."""
        if isinstance(self._setting, bool):
            return self._setting
        synced = self._probe()
        if synced != self._synced:
            log.info("system clock is %s", "synchronised" if synced else "not synchronised")
        self._synced = synced
        return synced

    def _probe(self) -> bool:
        try:
            if self._flag_file.exists():
                return True
        except OSError as exc:  # unreadable flag: fall through to asking the commands
            log.debug("cannot check %s: %s", self._flag_file, exc)
        for argv, interpret in self._commands:
            output = self._run(argv)
            if output is None:
                continue
            answer = interpret(output)
            if answer is not None:
                return answer
        return False
