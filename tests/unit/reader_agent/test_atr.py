"""ATR parsing and telling contact from contactless cards and their technology."""

import pytest

from protocol import CardTech
from reader_agent.sources.atr import AtrError, CardKind, classify_atr, parse_atr, tech_for_uid


def with_tck(hex_without_tck: str) -> bytes:
    raw = bytes.fromhex(hex_without_tck)
    tck = 0
    for byte in raw[1:]:
        tck ^= byte
    return raw + bytes([tck])


# Published ATRs of well-known cards (PC/SC part 3 forms made by the reader).
MIFARE_1K = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")
ULTRALIGHT = bytes.fromhex("3B8F8001804F0CA0000003060300030000000068")
DESFIRE_EV1 = bytes.fromhex("3B8180018080")
JCOP_V241 = with_tck("3B8880014A434F5076323431")  # historical bytes "JCOPv241"
# Type B: ATQB application data 00000000, protocol info 77 81 81, MBLI 0.
TYPE_B = with_tck("3B88800100000000778181 00".replace(" ", ""))
T0_ONLY = bytes.fromhex("3B6800008066B00701010707")


def test_parse_splits_interface_and_historical_bytes() -> None:
    atr = parse_atr(MIFARE_1K)
    assert atr.interface == {"TD1": 0x80, "TD2": 0x01}
    assert atr.protocols == frozenset({0, 1})
    assert atr.historical == bytes.fromhex("804F0CA000000306 03 0001 00000000".replace(" ", ""))
    assert atr.tck == 0x6A


def test_parse_t0_only_atr_has_no_tck() -> None:
    atr = parse_atr(T0_ONLY)
    assert atr.historical == bytes.fromhex("8066B00701010707")
    assert atr.protocols == frozenset({0})
    assert atr.tck is None
    assert atr.interface == {"TB1": 0x00, "TC1": 0x00}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("3B", "shorter than TS and T0"),
        ("3C8F", "not the TS byte"),
        ("3B8F8001804F", "historical bytes"),
        ("3B8F80", "ends inside TD2"),
        ("3B8F8001804F0CA000000306030001000000006B", "fails its TCK check"),
        ("3B8F8001804F0CA000000306030001000000", "historical bytes"),
        ("3B00AA", "extra bytes"),
    ],
)
def test_malformed_atrs_are_refused_with_the_reason(raw: str, message: str) -> None:
    with pytest.raises(AtrError, match=message):
        parse_atr(bytes.fromhex(raw))


@pytest.mark.parametrize(
    ("standard", "tech"),
    [
        (0x03, CardTech.ISO14443A),
        (0x01, CardTech.ISO14443A),
        (0x07, CardTech.ISO14443B),
        (0x11, CardTech.FELICA),
    ],
)
def test_storage_card_technology_comes_from_the_standard_byte(
    standard: int, tech: CardTech
) -> None:
    info = classify_atr(with_tck(f"3B8F8001804F0CA000000306{standard:02X}000100000000"))
    assert info.kind is CardKind.CONTACTLESS_STORAGE
    assert info.tech is tech
    assert info.standard == standard


def test_storage_card_description_names_standard_and_card() -> None:
    assert classify_atr(MIFARE_1K).description == "ISO 14443 A part 3, MIFARE Classic 1K"
    assert classify_atr(ULTRALIGHT).card_name == 0x0003


@pytest.mark.parametrize("standard", [0x0B, 0x40, 0x99])
def test_contactless_standards_without_a_protocol_name_have_no_tech(standard: int) -> None:
    info = classify_atr(with_tck(f"3B8F8001804F0CA000000306{standard:02X}000100000000"))
    assert info.kind is CardKind.CONTACTLESS_STORAGE
    assert info.tech is None


@pytest.mark.parametrize(
    ("raw", "tech"),
    [
        (DESFIRE_EV1, CardTech.ISO14443A),
        (JCOP_V241, CardTech.ISO14443A),
        (TYPE_B, CardTech.ISO14443B),
    ],
)
def test_iso14443_4_cards_tell_type_a_from_type_b(raw: bytes, tech: CardTech) -> None:
    info = classify_atr(raw)
    assert info.kind is CardKind.CONTACTLESS_ISO14443_4
    assert info.tech is tech


def test_type_b_guess_is_corrected_by_a_uid_longer_than_a_pupi() -> None:
    info = classify_atr(TYPE_B)
    assert tech_for_uid(info, bytes(4)) is CardTech.ISO14443B
    assert tech_for_uid(info, bytes(7)) is CardTech.ISO14443A


def test_scm_reader_felica_form_is_felica() -> None:
    raw = with_tck("3B8C800104 43FD 0116040042AB12CD 00".replace(" ", ""))
    assert classify_atr(raw).tech is CardTech.FELICA


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(bytes.fromhex("3BF81300008131FE15597562696B657934D4"), id="yubikey-ccid"),
        pytest.param(T0_ONLY, id="t0-only"),
        pytest.param(with_tck("3BD518008131FE7D8073C82110"), id="t1-with-ta1-tc1-ta3-tb3"),
        pytest.param(bytes.fromhex("3B0102"), id="malformed"),
    ],
)
def test_other_atrs_are_contact_cards(raw: bytes) -> None:
    info = classify_atr(raw)
    assert info.kind is CardKind.CONTACT
    assert info.tech is CardTech.ISO7816
