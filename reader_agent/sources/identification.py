"""Working out a card's technology and identifier from its ATR and a few APDUs."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from protocol import CardTech
from reader_agent.errors import CardReadError
from reader_agent.sources.apdu import (
    IdEncoding,
    StatusWordError,
    Transmit,
    encode_identifier,
    read_identifier,
    read_uid,
)
from reader_agent.sources.atr import CardKind, classify_atr, tech_for_uid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CardIdentity:
    """How a card identified itself, with a human description of what the ATR said."""

    tech: CardTech
    uid: str  # upper-case hex
    description: str


def identify_card(
    atr: bytes,
    transmit: Transmit,
    *,
    apdus: Sequence[bytes],
    id_encoding: IdEncoding,
) -> CardIdentity:
    """Read a contactless card's UID (GET DATA) or a contact card's identifier (the APDUs).

    Raises CardReadError (or its StatusWordError) when the card cannot be read.
    """
    info = classify_atr(atr)
    if info.kind is CardKind.CONTACT:
        data = read_identifier(transmit, apdus)
        return CardIdentity(
            CardTech.ISO7816, encode_identifier(data, id_encoding), info.description
        )
    if info.tech is None:
        raise CardReadError(
            f"{info.description}: not a technology Rollcall can report "
            "(ISO 14443 A/B, FeliCa or contact cards only)"
        )
    try:
        uid = read_uid(transmit)
    except StatusWordError as exc:
        if info.kind is not CardKind.CONTACTLESS_ISO14443_4 or not apdus:
            raise
        # A contact chip whose ATR happens to look like PC/SC part 3's 3B 8n 80 01 form
        # rejects the reader-only GET DATA; read it the contact way instead.
        log.info("GET DATA refused (%s); reading the card as a contact card", exc)
        data = read_identifier(transmit, apdus)
        return CardIdentity(CardTech.ISO7816, encode_identifier(data, id_encoding), "contact card")
    tech = tech_for_uid(info, uid) or info.tech
    return CardIdentity(tech, encode_identifier(uid, "hex"), info.description)
