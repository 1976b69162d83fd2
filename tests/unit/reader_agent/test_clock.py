"""Whether the clock is synced: fixed by configuration, or probed cheaply and safely."""

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pytest

from reader_agent.clock import SYNC_COMMANDS, ClockSyncProbe, SystemClock


class Commands:
    """Canned answers for system commands; records what was asked."""

    def __init__(self, answers: dict[str, str | None]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, argv: Sequence[str]) -> str | None:
        self.asked.append(argv[0])
        return self.answers.get(argv[0])


CHRONY_SYNCED = "Reference ID    : C0A80001\nLeap status     : Normal\n"
CHRONY_UNSYNCED = "Reference ID    : 00000000 ()\nLeap status     : Not synchronised\n"


def probe(
    tmp_path: Path, commands: Commands, setting: Literal["auto"] | bool = "auto"
) -> ClockSyncProbe:
    return ClockSyncProbe(
        setting,
        flag_file=tmp_path / "synchronized",
        run=commands,
    )


@pytest.mark.parametrize("setting", [True, False])
def test_configured_answer_is_used_without_probing(tmp_path: Path, setting: bool) -> None:
    commands = Commands({"timedatectl": "no\n"})
    clock = probe(tmp_path, commands, setting)
    assert clock.synced is setting
    assert clock.refresh() is setting
    assert commands.asked == []


def test_timesyncd_flag_file_means_synced(tmp_path: Path) -> None:
    (tmp_path / "synchronized").touch()
    commands = Commands({})
    clock = probe(tmp_path, commands)
    assert clock.refresh() is True
    assert clock.synced is True
    assert commands.asked == []


@pytest.mark.parametrize(
    ("answers", "synced"),
    [
        ({"timedatectl": "yes\n"}, True),
        ({"timedatectl": "no\n"}, False),
        ({"timedatectl": None, "chronyc": CHRONY_SYNCED}, True),
        ({"timedatectl": None, "chronyc": CHRONY_UNSYNCED}, False),
        ({"timedatectl": "gibberish", "chronyc": CHRONY_SYNCED}, True),
        ({}, False),
    ],
)
def test_commands_are_asked_in_turn(
    tmp_path: Path, answers: dict[str, str | None], synced: bool
) -> None:
    clock = probe(tmp_path, Commands(answers))
    assert clock.refresh() is synced
    assert clock.synced is synced


def test_answer_is_cached_until_refreshed(tmp_path: Path) -> None:
    commands = Commands({"timedatectl": "no\n"})
    clock = probe(tmp_path, commands)
    assert clock.synced is False  # not probed yet: unknown counts as not synced
    clock.refresh()
    commands.answers["timedatectl"] = "yes\n"
    assert clock.synced is False
    assert clock.refresh() is True
    assert commands.asked == ["timedatectl", "timedatectl"]


def test_real_probe_never_fails(tmp_path: Path) -> None:
    # Whatever this machine has (or lacks), the answer is a bool and nothing raises.
    clock = ClockSyncProbe("auto", flag_file=tmp_path / "absent", commands=SYNC_COMMANDS)
    assert clock.refresh() in (True, False)


def test_system_clock_is_aware_utc() -> None:
    now = SystemClock().now()
    assert now.utcoffset() is not None
    assert now.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
