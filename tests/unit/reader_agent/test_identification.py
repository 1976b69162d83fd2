"""Working out technology and identifier from the ATR and the card's answers."""

import pytest

from protocol import CardTech
from reader_agent.errors import CardReadError
from reader_agent.sources.apdu import GET_UID, Response, StatusWordError, parse_apdu
from reader_agent.sources.identification import identify_card

STORAGE_A = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")
ISO15693 = bytes.fromhex("3B8F8001804F0CA0000003060B00140000000077")
DESFIRE = bytes.fromhex("3B8180018080")
CONTACT = bytes.fromhex("3B6800008066B00701010707")
APDUS = [parse_apdu("00A4040002F001"), parse_apdu("00B0000004")]


class Card:
    """A hand-written card: a reader-side GET DATA answer and a tiny applet."""

    def __init__(self, uid: str | None = None, number: bytes = b"0042") -> None:
        self.uid = uid
        self.number = number
        self.commands: list[bytes] = []

    def __call__(self, apdu: bytes) -> Response:
        self.commands.append(apdu)
        if apdu == GET_UID:
            raw = bytes.fromhex(self.uid) + b"\x90\x00" if self.uid else b"\x6e\x00"
        elif apdu[1] == 0xA4:
            raw = b"\x90\x00"
        elif apdu[1] == 0xB0:
            raw = self.number + b"\x90\x00"
        else:
            raw = b"\x6d\x00"
        return Response.from_bytes(raw)


def test_contactless_card_is_identified_by_uid() -> None:
    card = Card(uid="04A1B2C3D4E5F6")
    identity = identify_card(STORAGE_A, card, apdus=APDUS, id_encoding="hex")
    assert (identity.tech, identity.uid) == (CardTech.ISO14443A, "04A1B2C3D4E5F6")
    assert card.commands == [GET_UID]


def test_contact_card_is_identified_by_the_apdus() -> None:
    card = Card(number=b"0042")
    identity = identify_card(CONTACT, card, apdus=APDUS, id_encoding="ascii")
    assert (identity.tech, identity.uid) == (CardTech.ISO7816, "0042")
    assert card.commands == APDUS


def test_iso14443_4_atr_on_a_contact_chip_falls_back_to_the_apdus() -> None:
    card = Card(uid=None, number=b"0042")  # refuses GET DATA like a real chip: 6E00
    identity = identify_card(DESFIRE, card, apdus=APDUS, id_encoding="ascii")
    assert (identity.tech, identity.uid) == (CardTech.ISO7816, "0042")


def test_get_data_refused_without_apdus_is_an_error() -> None:
    with pytest.raises(StatusWordError, match="6E00"):
        identify_card(STORAGE_A, Card(uid=None), apdus=[], id_encoding="hex")


def test_technology_without_a_protocol_name_is_refused() -> None:
    with pytest.raises(CardReadError, match="ISO 15693 part 3"):
        identify_card(ISO15693, Card(uid="E004010203040506"), apdus=[], id_encoding="hex")
