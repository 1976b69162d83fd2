"""The strong tier's card exchanges through the real PC/SC stack: challenge, answer, personalise."""

import pytest
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

from reader_agent.cardauth import CardKeyFile, Personaliser
from reader_agent.sources.options import PcscOptions
from reader_agent.sources.pcsc import PcscSource
from tests.integration.pcsc.conftest import CardFactory
from tests.integration.pcsc.pcscd import READER_NAME, wait_reader_empty
from tests.integration.pcsc.vicc import KEYED_CARD_ATR, KeyedCard
from tests.support.card_sources import SourceRunner

pytestmark = pytest.mark.integration

ARRIVAL = 5.0
UID = bytes.fromhex("04A1B2C3D4E5F6")
KEY = bytes.fromhex("A8DD63A3B89D54B37CA802473FDA9175")


def options(**overrides: object) -> PcscOptions:
    return PcscOptions.model_validate({"reader": READER_NAME, **overrides})


def cmac_of(key: bytes, data: bytes) -> bytes:
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def test_a_keyed_card_answers_the_challenge_made_of_the_taps_event_id(
    make_card: CardFactory,
) -> None:
    applet = KeyedCard(UID, key=KEY, keyref=2)
    card = make_card(KEYED_CARD_ATR, applet.respond)
    with SourceRunner(PcscSource(options(challenge_response=True, auth_keyref=2))) as runner:
        card.insert()
        seen = runner.next(ARRIVAL)

    assert seen.uid == UID.hex().upper()
    assert seen.event_id is not None
    assert seen.auth is not None
    assert bytes.fromhex(seen.auth.challenge) == seen.event_id.bytes
    assert bytes.fromhex(seen.auth.response) == cmac_of(KEY, seen.event_id.bytes)
    challenge_apdu = card.apdus[-1]
    assert challenge_apdu == bytes.fromhex("00880002" + "10") + seen.event_id.bytes + b"\x00"


def test_a_clone_without_the_key_gives_a_uid_only_presentation(make_card: CardFactory) -> None:
    card = make_card(KEYED_CARD_ATR, KeyedCard(UID).respond)
    with SourceRunner(PcscSource(options(challenge_response=True))) as runner:
        card.insert()
        seen = runner.next(ARRIVAL)

    assert seen.uid == UID.hex().upper()
    assert seen.auth is None
    assert card.apdus[-1][:2] == b"\x00\x88"


def test_without_challenge_response_no_challenge_is_sent(make_card: CardFactory) -> None:
    card = make_card(KEYED_CARD_ATR, KeyedCard(UID, key=KEY).respond)
    with SourceRunner(PcscSource(options())) as runner:
        card.insert()
        seen = runner.next(ARRIVAL)

    assert (seen.auth, seen.event_id) == (None, None)
    assert card.apdus == [bytes.fromhex("FFCA000000")]


def test_personalising_writes_the_key_only_to_the_card_it_is_for(make_card: CardFactory) -> None:
    other = KeyedCard(bytes.fromhex("04000000000001"))
    wrong_card = make_card(KEYED_CARD_ATR, other.respond)
    key_file = CardKeyFile(UID.hex().upper(), KEY, key_version=1)
    personaliser = Personaliser.from_options([key_file], options())
    with SourceRunner(PcscSource(options(), authenticator=personaliser)) as runner:
        wrong_card.insert()
        runner.next(ARRIVAL)
        assert personaliser.written_uid is None
        assert personaliser.refusal is not None
        assert "04000000000001" in personaliser.refusal
        assert other.key is None
        wrong_card.remove()
        wait_reader_empty()

        target = KeyedCard(UID)
        card = make_card(KEYED_CARD_ATR, target.respond)
        card.insert()
        runner.next(ARRIVAL)

    assert personaliser.written_uid == UID.hex().upper()
    assert target.key == KEY
    assert card.apdus[-1] == bytes.fromhex("80D8000010") + KEY
