"""`test-card` and `list-readers` against the real PC/SC stack."""

import io
import threading
from dataclasses import dataclass, field

import pytest

from reader_agent import diagnostics
from reader_agent.sources.options import NfcpyOptions, PcscOptions
from tests.integration.pcsc.conftest import CardFactory
from tests.integration.pcsc.pcscd import READER_NAME, Pcscd
from tests.integration.pcsc.vicc import contactless_responder, storage_card_atr

pytestmark = pytest.mark.integration


@dataclass
class Settings:
    """The three settings the diagnostics read, as ReaderSettings has them."""

    source: str = "pcsc"
    pcsc: PcscOptions = field(default_factory=lambda: PcscOptions(reader=READER_NAME))
    nfcpy: NfcpyOptions = field(default_factory=NfcpyOptions)


def test_list_readers_shows_each_reader_and_its_card(make_card: CardFactory) -> None:
    card = make_card(storage_card_atr(0x03), contactless_responder(b"\x01\x02\x03\x04"))
    card.insert()
    out = io.StringIO()
    for _ in range(20):  # pcscd notices the card at its next 400 ms poll
        out = io.StringIO()
        code = diagnostics.list_readers(out=out)
        if "card present" in out.getvalue():
            break
        threading.Event().wait(0.2)
    text = out.getvalue()
    assert code == diagnostics.EXIT_OK
    assert (
        f"{READER_NAME}: card present, ATR {card.atr.hex().upper()} "
        "(ISO 14443 A part 3, MIFARE Classic 1K)" in text
    )
    assert "Virtual PCD 00 01: no card" in text
    assert "nfcpy devices:" in text


def test_list_readers_says_when_pcscd_is_not_running(pcscd: Pcscd) -> None:
    pcscd.stop()
    out = io.StringIO()
    code = diagnostics.list_readers(out=out)
    assert code == diagnostics.EXIT_NO_CARD
    assert "pcscd is not running (Service not available.)" in out.getvalue()
    assert "apt-get install pcscd" in out.getvalue()


def test_test_card_prints_what_the_card_says(make_card: CardFactory) -> None:
    card = make_card(storage_card_atr(0x03), contactless_responder(bytes.fromhex("04A1B2C3D4E5F6")))
    out = io.StringIO()
    threading.Timer(0.5, card.insert).start()
    code = diagnostics.test_card(Settings(), timeout=10, out=out)
    lines = out.getvalue().splitlines()
    assert code == diagnostics.EXIT_OK
    assert "source:     pcsc" in lines
    assert f"reader:     {READER_NAME}" in lines
    assert "technology: iso14443a" in lines
    assert "uid:        04A1B2C3D4E5F6" in lines
    assert f"atr:        {card.atr.hex().upper()} (ISO 14443 A part 3, MIFARE Classic 1K)" in lines


def test_test_card_without_a_card_gives_up_after_the_timeout(pcscd: Pcscd) -> None:
    del pcscd
    out = io.StringIO()
    assert diagnostics.test_card(Settings(), timeout=1.0, out=out) == diagnostics.EXIT_NO_CARD
    assert "no card read within 1 s" in out.getvalue()


def test_test_card_on_the_simulated_source_says_what_to_set() -> None:
    out = io.StringIO()
    code = diagnostics.test_card(Settings(source="simulated"), timeout=1.0, out=out)
    assert code == diagnostics.EXIT_UNUSABLE
    assert "set source = 'pcsc' or 'nfcpy'" in out.getvalue()
