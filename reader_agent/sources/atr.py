"""Answer-to-reset parsing (ISO 7816-3) and telling a card's technology from its ATR.

A PC/SC contactless reader makes up an ATR for each card it finds (PC/SC part 3,
supplemental document): storage cards get `3B 8F 80 01 80 4F 0C A0 00 00 03 06
SS NN NN 00 00 00 00 TCK` with the standard byte SS and card name NN NN; ISO
14443-4 cards get `3B 8n 80 01` + historical bytes + TCK, the historical bytes
being the ATS's for type A and ATQB application data, protocol info and MBLI
(8 bytes) for type B. Any other ATR came from a contact card.
"""

from dataclasses import dataclass
from enum import StrEnum

from protocol import CardTech


class AtrError(ValueError):
    """Bytes that are not a well-formed ATR."""


@dataclass(frozen=True)
class Atr:
    """The parts of an ATR: interface bytes by name (TA1, TD1, ...), historical bytes, TCK."""

    raw: bytes
    interface: dict[str, int]
    historical: bytes
    protocols: frozenset[int]
    tck: int | None


def parse_atr(raw: bytes) -> Atr:
    """Split an ATR into interface bytes, historical bytes and the check byte."""
    if len(raw) < 2:
        raise AtrError(f"ATR {raw.hex().upper()!r} is shorter than TS and T0")
    if raw[0] not in (0x3B, 0x3F):
        raise AtrError(f"ATR starts with {raw[0]:02X}, not the TS byte 3B or 3F")
    historical_count = raw[1] & 0x0F
    interface, protocols, pos = _interface_bytes(raw)
    end_of_historical = pos + historical_count
    if end_of_historical > len(raw):
        raise AtrError(
            f"ATR {raw.hex().upper()} announces {historical_count} historical bytes "
            f"but has only {len(raw) - pos}"
        )
    historical = raw[pos:end_of_historical]
    # TCK is present unless T=0 is the only protocol offered.
    needs_tck = protocols != {0}
    tck: int | None = None
    if needs_tck:
        if end_of_historical >= len(raw):
            raise AtrError(f"ATR {raw.hex().upper()} lacks its TCK check byte")
        tck = raw[end_of_historical]
        check = 0
        for byte in raw[1 : end_of_historical + 1]:
            check ^= byte
        if check:
            raise AtrError(f"ATR {raw.hex().upper()} fails its TCK check")
        end_of_historical += 1
    if end_of_historical != len(raw):
        raise AtrError(f"ATR {raw.hex().upper()} has {len(raw) - end_of_historical} extra bytes")
    return Atr(
        raw=bytes(raw),
        interface=interface,
        historical=bytes(historical),
        protocols=frozenset(protocols),
        tck=tck,
    )


def _interface_bytes(raw: bytes) -> tuple[dict[str, int], set[int], int]:
    # Walk TA1/TB1/TC1/TD1, TA2..., each TDi saying which bytes of level i+1 follow.
    interface: dict[str, int] = {}
    protocols: set[int] = set()
    pos = 2
    presence = raw[1] >> 4
    level = 1
    while True:
        td: int | None = None
        for bit, letter in ((0x1, "A"), (0x2, "B"), (0x4, "C"), (0x8, "D")):
            if not presence & bit:
                continue
            if pos >= len(raw):
                raise AtrError(f"ATR {raw.hex().upper()} ends inside T{letter}{level}")
            interface[f"T{letter}{level}"] = raw[pos]
            if letter == "D":
                td = raw[pos]
            pos += 1
        if td is None:
            break
        protocols.add(td & 0x0F)
        presence = td >> 4
        level += 1
    if not protocols:
        protocols.add(0)  # no TD1: T=0 is implied
    return interface, protocols, pos


class CardKind(StrEnum):
    """How the reader presents the card: a contact chip or one of PC/SC part 3's two forms."""

    CONTACT = "contact"
    CONTACTLESS_STORAGE = "contactless storage card"
    CONTACTLESS_ISO14443_4 = "contactless ISO 14443-4 card"


@dataclass(frozen=True)
class AtrInfo:
    """What an ATR says about a card; `tech` None: a technology the protocol has no name for."""

    kind: CardKind
    tech: CardTech | None
    description: str
    standard: int | None = None
    card_name: int | None = None


_PCSC_RID_PREFIX = bytes.fromhex("804F0CA000000306")

# PC/SC part 3 supplement, standard byte SS.
_STANDARDS: dict[int, tuple[CardTech | None, str]] = {
    0x01: (CardTech.ISO14443A, "ISO 14443 A part 1"),
    0x02: (CardTech.ISO14443A, "ISO 14443 A part 2"),
    0x03: (CardTech.ISO14443A, "ISO 14443 A part 3"),
    0x04: (CardTech.ISO14443A, "ISO 14443 A part 4"),  # RFU in the spec; some readers use it
    0x05: (CardTech.ISO14443B, "ISO 14443 B part 1"),
    0x06: (CardTech.ISO14443B, "ISO 14443 B part 2"),
    0x07: (CardTech.ISO14443B, "ISO 14443 B part 3"),
    0x08: (CardTech.ISO14443B, "ISO 14443 B part 4"),
    0x09: (None, "ISO 15693 part 1"),
    0x0A: (None, "ISO 15693 part 2"),
    0x0B: (None, "ISO 15693 part 3"),
    0x0C: (None, "ISO 15693 part 4"),
    0x11: (CardTech.FELICA, "FeliCa"),
    0x40: (None, "low-frequency contactless card"),
}

_CARD_NAMES = {
    0x0001: "MIFARE Classic 1K",
    0x0002: "MIFARE Classic 4K",
    0x0003: "MIFARE Ultralight",
    0x0026: "MIFARE Mini",
}


def classify_atr(raw: bytes) -> AtrInfo:
    """Tell contact from contactless cards and name the contactless technology."""
    try:
        atr = parse_atr(raw)
    except AtrError as exc:
        # Contactless readers build well-formed ATRs; only a contact chip sends odd ones.
        return AtrInfo(CardKind.CONTACT, CardTech.ISO7816, f"contact card (ATR not parsed: {exc})")
    if not _has_pcsc_contactless_shape(atr):
        return AtrInfo(CardKind.CONTACT, CardTech.ISO7816, "contact card")
    hist = atr.historical
    if hist.startswith(_PCSC_RID_PREFIX) and len(hist) >= 11:
        standard = hist[8]
        card_name = int.from_bytes(hist[9:11], "big")
        tech, standard_text = _STANDARDS.get(
            standard, (None, f"unknown contactless standard {standard:02X}")
        )
        name = _CARD_NAMES.get(card_name, f"card name {card_name:04X}")
        return AtrInfo(
            CardKind.CONTACTLESS_STORAGE,
            tech,
            f"{standard_text}, {name}",
            standard=standard,
            card_name=card_name,
        )
    if len(hist) == 12 and hist[:3] == b"\x04\x43\xfd":
        # SCM/Identiv readers (SCL3711, SCL01x) map FeliCa to card mode 04, type 43,
        # IFS FD, the IDm and a timeout byte rather than to the storage-card form.
        return AtrInfo(CardKind.CONTACTLESS_STORAGE, CardTech.FELICA, "FeliCa (SCM reader form)")
    if _looks_like_type_b(hist):
        return AtrInfo(CardKind.CONTACTLESS_ISO14443_4, CardTech.ISO14443B, "ISO 14443-4 type B")
    return AtrInfo(CardKind.CONTACTLESS_ISO14443_4, CardTech.ISO14443A, "ISO 14443-4 type A")


def tech_for_uid(info: AtrInfo, uid: bytes) -> CardTech | None:
    """Correct the ATR's guess with the UID: a type B PUPI is always 4 bytes."""
    if info.tech is CardTech.ISO14443B and info.kind is CardKind.CONTACTLESS_ISO14443_4:
        return CardTech.ISO14443B if len(uid) == 4 else CardTech.ISO14443A
    return info.tech


def _has_pcsc_contactless_shape(atr: Atr) -> bool:
    # 3B 8n 80 01 ...: only TD1 = 80 and TD2 = 01, no other interface bytes.
    return (
        atr.raw[0] == 0x3B
        and atr.raw[1] >> 4 == 0x8
        and atr.interface == {"TD1": 0x80, "TD2": 0x01}
    )


def _looks_like_type_b(hist: bytes) -> bool:
    # Type B: 4 bytes ATQB application data, 3 bytes protocol info, then MBLI in the high
    # nibble of the last byte with a zero low nibble. The second protocol info byte
    # carries Protocol_Type in its low nibble, where only 0 and 1 are defined. ATS
    # historical bytes of a type A card rarely fit all of this (JCOP's "JCOPv241" does not).
    return len(hist) == 8 and hist[5] & 0x0F in (0x00, 0x01) and hist[7] & 0x0F == 0
