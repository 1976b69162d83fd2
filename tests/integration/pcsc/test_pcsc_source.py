"""The pcsc source against the real PC/SC stack: pcscd, the vpcd driver, pyscard, virtual cards."""

import logging
import time
from pathlib import Path

import pytest

from protocol import CardTech
from reader_agent.sources.options import PcscOptions
from reader_agent.sources.pcsc import PcscSource
from tests.integration.pcsc.conftest import CardFactory
from tests.integration.pcsc.pcscd import READER_NAME, Pcscd
from tests.integration.pcsc.vicc import (
    CONTACT_ATR,
    ContactApplet,
    contactless_responder,
    iso14443_4_atr,
    storage_card_atr,
    vanishing_responder,
)
from tests.support.card_sources import SourceRunner

pytestmark = pytest.mark.integration

# pcscd asks vpcd whether a card is there every 400 ms; allow for a few rounds.
ARRIVAL = 5.0
# Longer than one poll: a lift shorter than this is invisible to pcscd.
LIFT = 0.9

UID_7 = bytes.fromhex("04A1B2C3D4E5F6")
AID = bytes.fromhex("F0524F4C4C43414C")  # "ROLLCAL" under a proprietary RID
EMPLOYEE_NUMBER = b"00012345"
SELECT = "00A4040008" + AID.hex().upper()
READ_BINARY = "00B0000008"


def pcsc_source(**overrides: object) -> PcscSource:
    options = PcscOptions.model_validate({"reader": READER_NAME, **overrides})
    return PcscSource(options)


def test_contactless_card_gives_its_uid_tech_atr_and_reader(make_card: CardFactory) -> None:
    card = make_card(storage_card_atr(0x03), contactless_responder(UID_7))
    with SourceRunner(pcsc_source()) as runner:
        card.insert()
        seen = runner.next(ARRIVAL)
    assert seen.uid == "04A1B2C3D4E5F6"
    assert seen.tech is CardTech.ISO14443A
    assert seen.source == "pcsc"
    assert seen.reader_name == READER_NAME
    assert seen.atr == card.atr.hex().upper()
    assert card.apdus == [bytes.fromhex("FFCA000000")]


@pytest.mark.parametrize(
    ("atr", "uid", "tech"),
    [
        pytest.param(
            storage_card_atr(0x11, b"\x00\x3b"),
            bytes.fromhex("0101010601B00ADE"),
            CardTech.FELICA,
            id="felica-storage",
        ),
        pytest.param(
            iso14443_4_atr(bytes.fromhex("0000000077818100")),
            bytes.fromhex("1A2B3C4D"),
            CardTech.ISO14443B,
            id="iso14443-4-type-b",
        ),
        pytest.param(
            iso14443_4_atr(bytes.fromhex("8080")),
            bytes.fromhex("04112233445566"),
            CardTech.ISO14443A,
            id="iso14443-4-type-a",
        ),
    ],
)
def test_contactless_technology_comes_from_the_atr(
    make_card: CardFactory, atr: bytes, uid: bytes, tech: CardTech
) -> None:
    card = make_card(atr, contactless_responder(uid))
    with SourceRunner(pcsc_source()) as runner:
        card.insert()
        seen = runner.next(ARRIVAL)
    assert (seen.tech, seen.uid) == (tech, uid.hex().upper())


def test_contact_card_is_read_with_the_configured_apdus(make_card: CardFactory) -> None:
    applet = ContactApplet(AID, EMPLOYEE_NUMBER)
    card = make_card(CONTACT_ATR, applet.respond)
    source = pcsc_source(apdus=[SELECT, READ_BINARY], id_encoding="ascii")
    with SourceRunner(source) as runner:
        card.insert()
        seen = runner.next(ARRIVAL)
    assert (seen.tech, seen.uid) == (CardTech.ISO7816, "00012345")
    assert [apdu.hex().upper() for apdu in card.apdus] == [SELECT, READ_BINARY]


def test_t0_contact_card_answers_are_followed_with_get_response(make_card: CardFactory) -> None:
    applet = ContactApplet(AID, bytes.fromhex("C0FFEE0042"), t0_get_response=True)
    card = make_card(CONTACT_ATR, applet.respond)
    source = pcsc_source(apdus=[SELECT, "00B0000005"], id_encoding="hex")
    with SourceRunner(source) as runner:
        card.insert()
        seen = runner.next(ARRIVAL)
    assert seen.uid == "C0FFEE0042"
    assert card.apdus[1][:2] == b"\x00\xc0"  # GET RESPONSE after the 61xx


def test_refused_apdu_is_a_logged_error_and_no_tap(
    make_card: CardFactory, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_application = ContactApplet(bytes.fromhex("A000000001"), EMPLOYEE_NUMBER)
    card = make_card(CONTACT_ATR, wrong_application.respond)
    with (
        caplog.at_level(logging.WARNING, logger="reader_agent.sources.pcsc"),
        SourceRunner(pcsc_source(apdus=[SELECT, READ_BINARY])) as runner,
    ):
        card.insert()
        runner.assert_quiet(2.0)
    assert "6A82" in caplog.text
    assert "file or application not found" in caplog.text


def test_card_held_still_is_one_presentation_and_a_second_tap_is_another(
    make_card: CardFactory,
) -> None:
    card = make_card(storage_card_atr(0x03), contactless_responder(UID_7))
    with SourceRunner(pcsc_source()) as runner:
        card.insert()
        first = runner.next(ARRIVAL)
        runner.assert_quiet(2.0)  # still on the reader: five pcscd polls, no new tap
        card.remove()
        time.sleep(LIFT)
        card.insert()
        second = runner.next(ARRIVAL)
        runner.assert_quiet(1.0)
    assert first.uid == second.uid == "04A1B2C3D4E5F6"
    assert second.seen_at > first.seen_at


def test_card_pulled_away_mid_read_gives_no_tap_and_the_next_card_reads(
    make_card: CardFactory, caplog: pytest.LogCaptureFixture
) -> None:
    fleeting = make_card(CONTACT_ATR, vanishing_responder)
    steady = make_card(CONTACT_ATR, ContactApplet(AID, EMPLOYEE_NUMBER).respond)
    source = pcsc_source(apdus=[SELECT, READ_BINARY], id_encoding="ascii")
    with (
        caplog.at_level(logging.WARNING, logger="reader_agent.sources.pcsc"),
        SourceRunner(source) as runner,
    ):
        fleeting.insert()
        assert fleeting.vanished.wait(ARRIVAL), "the source never spoke to the card"
        runner.assert_quiet(1.0)
        time.sleep(LIFT)
        steady.insert()
        seen = runner.next(ARRIVAL)
        assert runner.alive
    assert seen.uid == "00012345"
    assert "could not be read" in caplog.text


def test_source_recovers_when_pcscd_restarts(
    pcscd: Pcscd, make_card: CardFactory, caplog: pytest.LogCaptureFixture
) -> None:
    first = make_card(storage_card_atr(0x03), contactless_responder(UID_7))
    second = make_card(storage_card_atr(0x03), contactless_responder(bytes.fromhex("08A0B0C0")))
    with (
        caplog.at_level(logging.INFO, logger="reader_agent.sources.pcsc"),
        SourceRunner(pcsc_source()) as runner,
    ):
        first.insert()
        assert runner.next(ARRIVAL).uid == "04A1B2C3D4E5F6"
        first.remove()
        pcscd.stop()
        time.sleep(1.5)  # the source notices and keeps retrying
        assert runner.alive
        pcscd.start()
        second.insert()
        # Backoff pauses grow from 0.25 s; a few seconds cover the reconnect.
        assert runner.next(ARRIVAL + 5).uid == "08A0B0C0"
    assert "PC/SC service not reachable" in caplog.text
    assert "pcscd is reachable again" in caplog.text


def test_card_lying_on_the_reader_across_a_pcscd_restart_is_not_a_new_tap(
    pcscd: Pcscd, make_card: CardFactory
) -> None:
    card = make_card(storage_card_atr(0x03), contactless_responder(UID_7), stay_on_reader=True)
    with SourceRunner(pcsc_source()) as runner:
        card.insert()
        runner.next(ARRIVAL)
        pcscd.restart()  # the card reconnects to the new vpcd: it never left the reader
        runner.assert_quiet(4.0)
        card.remove()
        time.sleep(LIFT)
        card.insert()
        assert runner.next(ARRIVAL).uid == "04A1B2C3D4E5F6"


def test_source_waits_for_a_reader_to_be_plugged_in(
    pcscd: Pcscd, make_card: CardFactory, empty_reader_conf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pcscd.stop()
    pcscd.start(config_dir=empty_reader_conf, expect_reader=False)
    card = make_card(storage_card_atr(0x03), contactless_responder(UID_7))
    with (
        caplog.at_level(logging.INFO, logger="reader_agent.sources.pcsc"),
        SourceRunner(pcsc_source()) as runner,
    ):
        time.sleep(1.0)
        assert "no PC/SC reader matching" in caplog.text
        pcscd.restart()  # now with vpcd configured, as if the reader was plugged in
        card.insert()
        assert runner.next(ARRIVAL + 5).uid == "04A1B2C3D4E5F6"


def test_stop_ends_the_source_promptly(pcscd: Pcscd) -> None:
    del pcscd
    runner = SourceRunner(pcsc_source(poll_seconds=0.5))
    with runner:
        time.sleep(0.5)
    elapsed = runner.stop()
    assert elapsed < 1.5
