"""APDU parsing, T=0 response handling and turning identifier bytes into wire-format hex."""

import pytest

from reader_agent.errors import CardReadError
from reader_agent.sources.apdu import (
    GET_UID,
    IdEncoding,
    Response,
    StatusWordError,
    describe_sw,
    encode_identifier,
    exchange,
    parse_apdu,
    read_identifier,
    read_uid,
)


class ScriptedCard:
    """A card that answers each command with the next scripted response (hex)."""

    def __init__(self, *answers: str) -> None:
        self.answers = [bytes.fromhex(answer) for answer in answers]
        self.commands: list[bytes] = []

    def __call__(self, apdu: bytes) -> Response:
        self.commands.append(apdu)
        return Response.from_bytes(self.answers.pop(0))


@pytest.mark.parametrize(
    "text",
    [
        "00A4040007F0010203040506",  # case 3 short
        "00 a4 04 00 07 f0 01 02 03 04 05 06 00",  # case 4 short, spaces and lower case
        "00B0000008",  # case 2 short
        "00B00000",  # case 1
        "00B00000000100",  # case 2 extended
        "00DA0000000002AABB",  # case 3 extended
    ],
)
def test_well_formed_apdus_parse(text: str) -> None:
    assert parse_apdu(text) == bytes.fromhex(text.replace(" ", ""))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "hex digits"),
        ("00A4X4", "hex digits"),
        ("00A404", "shorter than its 4-byte header"),
        ("00A4040007F001", "Lc says 7 data bytes but 2"),
        ("00DA0000000005AABB", "extended Lc says 5"),
    ],
)
def test_malformed_apdus_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_apdu(text)


def test_61xx_is_followed_with_get_response_and_data_joined() -> None:
    card = ScriptedCard("AABB6104", "CCDDEEFF9000")
    response = exchange(card, bytes.fromhex("00A4040002F001"))
    assert response.data == bytes.fromhex("AABBCCDDEEFF")
    assert card.commands[1] == bytes.fromhex("00C0000004")


def test_get_response_keeps_the_logical_channel_but_not_a_proprietary_class() -> None:
    card = ScriptedCard("6102", "01029000")
    exchange(card, bytes.fromhex("01A4040002F001"))
    assert card.commands[1][0] == 0x01
    card = ScriptedCard("6102", "01029000")
    exchange(card, GET_UID)
    assert card.commands[1][0] == 0x00


def test_6cxx_resends_with_the_right_le() -> None:
    card = ScriptedCard("6C08", "30303031323334359000")
    response = exchange(card, bytes.fromhex("00B0000000"))
    assert card.commands[1] == bytes.fromhex("00B0000008")
    assert response.data == b"00012345"


def test_a_status_word_other_than_9000_is_an_error_naming_it() -> None:
    card = ScriptedCard("6A82")
    with pytest.raises(StatusWordError, match=r"6A82 \(file or application not found\)") as info:
        exchange(card, bytes.fromhex("00A4040002F001"))
    assert info.value.response.sw == 0x6A82
    assert "00A4040002F001" in str(info.value)


def test_an_empty_answer_means_the_card_went_away() -> None:
    with pytest.raises(CardReadError, match="taken away mid-read"):
        Response.from_bytes(b"")


def test_read_identifier_returns_the_last_responses_data() -> None:
    card = ScriptedCard("6F009000", "30303031323334359000")
    apdus = [parse_apdu("00A4040002F001"), parse_apdu("00B0000008")]
    assert read_identifier(card, apdus) == b"00012345"
    assert card.commands == apdus


def test_read_identifier_stops_at_the_first_refusal() -> None:
    card = ScriptedCard("6982")
    apdus = [parse_apdu("00A4040002F001"), parse_apdu("00B0000008")]
    with pytest.raises(StatusWordError, match="security status not satisfied"):
        read_identifier(card, apdus)
    assert len(card.commands) == 1


def test_read_identifier_without_apdus_says_what_to_configure() -> None:
    with pytest.raises(CardReadError, match=r"\[pcsc\] apdus"):
        read_identifier(ScriptedCard(), [])


def test_read_identifier_refuses_empty_data() -> None:
    with pytest.raises(CardReadError, match="returned no data"):
        read_identifier(ScriptedCard("9000"), [parse_apdu("00B0000008")])


def test_read_uid_sends_get_data() -> None:
    card = ScriptedCard("04A1B2C3D4E5F69000")
    assert read_uid(card) == bytes.fromhex("04A1B2C3D4E5F6")
    assert card.commands == [GET_UID]


@pytest.mark.parametrize(
    ("data", "encoding", "uid"),
    [
        (bytes.fromhex("0a1b"), "hex", "0A1B"),
        (b"00012345", "ascii", "00012345"),
        (b"12345\x00\x00\xff", "ascii", "012345"),
        (b" e12f ", "ascii", "E12F"),
    ],
)
def test_identifier_encoding(data: bytes, encoding: IdEncoding, uid: str) -> None:
    assert encode_identifier(data, encoding) == uid


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"A-123", "characters other than 0-9 and A-F"),
        (bytes.fromhex("C3A9"), "not ASCII"),
        (b"1" * 65, "longer than the 64 allowed"),
    ],
)
def test_ascii_identifiers_that_cannot_be_hex_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(CardReadError, match=message):
        encode_identifier(data, "ascii")


def test_status_words_read_as_english() -> None:
    assert describe_sw(0x6110) == "16 more bytes available"
    assert describe_sw(0x63C2) == "verification failed, 2 tries left"
    assert describe_sw(0x6789) == "unknown status"
