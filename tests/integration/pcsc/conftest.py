"""Fixtures for the PC/SC tests: the tests' own pcscd with vpcd, and virtual cards."""

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.integration.pcsc.pcscd import (
    Pcscd,
    PcscdUnavailable,
    check_stack,
    machine_lock,
    wait_reader_empty,
    write_vpcd_config,
)
from tests.integration.pcsc.vicc import Responder, VirtualCard


@pytest.fixture(scope="session")
def pcscd_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    """One pcscd for the whole run, started after stopping any other; never skipped."""
    try:
        check_stack()
    except PcscdUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    base = tmp_path_factory.mktemp("pcscd")
    daemon = Pcscd(write_vpcd_config(base / "reader.conf.d"), base / "pcscd.log")
    with machine_lock():
        try:
            daemon.start()
        except PcscdUnavailable as exc:
            daemon.stop()
            daemon.give_back()
            pytest.fail(str(exc), pytrace=False)
        try:
            yield daemon
        finally:
            daemon.stop()
            daemon.give_back()


@pytest.fixture
def pcscd(pcscd_daemon: Pcscd) -> Pcscd:
    """The tests' pcscd, running with vpcd configured (a test may have stopped it)."""
    if not pcscd_daemon.running:
        pcscd_daemon.start()
    return pcscd_daemon


class CardFactory(Protocol):
    """Makes a virtual card that the fixture removes after the test."""

    def __call__(
        self, atr: bytes, responder: Responder, *, stay_on_reader: bool = False
    ) -> VirtualCard:
        """Build one card (not yet on the reader)."""


@pytest.fixture
def make_card(pcscd: Pcscd) -> Iterator[CardFactory]:
    """Build virtual cards for vpcd; every one is taken off the reader after the test."""
    del pcscd  # only needed running
    wait_reader_empty()
    cards: list[VirtualCard] = []

    def make(atr: bytes, responder: Responder, *, stay_on_reader: bool = False) -> VirtualCard:
        card = VirtualCard(atr, responder, stay_on_reader=stay_on_reader)
        cards.append(card)
        return card

    yield make
    for card in cards:
        card.remove()


@pytest.fixture
def empty_reader_conf(tmp_path: Path) -> Path:
    """A reader.conf.d with no readers at all, for a pcscd that has nothing plugged in."""
    directory = tmp_path / "no-readers.conf.d"
    directory.mkdir()
    return directory
