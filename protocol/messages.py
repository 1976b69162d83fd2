"""The four v1 message types as pydantic models.

Every payload is a UTF-8 JSON object with `"v": 1` and a `"type"`. Unknown
fields are ignored so that v1 can grow optional fields; timestamps are RFC 3339
in UTC on the wire and timezone-aware UTC in memory.
"""

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
)

from protocol.topics import READER_ID_PATTERN

_HEX = re.compile(r"(?:[0-9A-F]{2})+")


def _upper_hex(value: str) -> str:
    upper = value.upper()
    if not _HEX.fullmatch(upper):
        raise ValueError("must be an even number of hex digits")
    return upper


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        # 9999-12-31T23:59:59-23:59 is valid RFC 3339 but past datetime's range in UTC:
        # a validation error like any other bad time, not a crash at the decoder.
        raise ValueError("time is outside the representable range once in UTC") from exc


def _rfc3339(value: datetime) -> str:
    # The shortest exact form: whole seconds, milliseconds or microseconds.
    utc = value.astimezone(UTC)
    if utc.microsecond == 0:
        timespec = "seconds"
    elif utc.microsecond % 1000 == 0:
        timespec = "milliseconds"
    else:
        timespec = "microseconds"
    return utc.isoformat(timespec=timespec).replace("+00:00", "Z")


UtcDatetime = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc),
    PlainSerializer(_rfc3339, return_type=str, when_used="json"),
]
HexUid = Annotated[str, Field(min_length=2, max_length=64), AfterValidator(_upper_hex)]
HexBytes = Annotated[str, Field(min_length=2, max_length=1024), AfterValidator(_upper_hex)]
ReaderId = Annotated[str, Field(pattern=f"^{READER_ID_PATTERN.pattern}$")]
ShortText = Annotated[str, Field(max_length=200)]


class CardTech(StrEnum):
    """Card technology as told by the reader (ATR, NFC target type)."""

    ISO14443A = "iso14443a"
    ISO14443B = "iso14443b"
    FELICA = "felica"
    ISO7816 = "iso7816"


class TapMode(StrEnum):
    """What a tap is for; a reader's configured mode when the tap omits it."""

    CHECKIN = "checkin"
    CHECKOUT = "checkout"
    KIOSK = "kiosk"
    ENROLL = "enroll"


class AckResult(StrEnum):
    """The server's verdict on a tap."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    UNKNOWN_CARD = "unknown_card"
    CARD_REVOKED = "card_revoked"
    NO_SESSION = "no_session"
    NOT_EXPECTED = "not_expected"
    REJECTED = "rejected"


class ReaderState(StrEnum):
    """A reader agent's connection state, as published on its status topic."""

    ONLINE = "online"
    OFFLINE = "offline"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, use_enum_values=False)


class CardAuth(_Model):
    """Challenge sent to the card and the card's answer, for the strong identity tier.

    The challenge is the tap's own `event_id` (its 16 bytes), so an answer recorded
    for one tap is worthless for any other; the response is what the card returned
    to INTERNAL AUTHENTICATE: AES-CMAC of the challenge under the card's own key.
    """

    challenge: HexBytes
    response: HexBytes


class CardId(_Model):
    """How a card identified itself: technology and UID (upper-case hex)."""

    tech: CardTech
    uid: HexUid
    auth: CardAuth | None = None


class Display(_Model):
    """Short text for the reader's screen."""

    title: ShortText
    lines: list[ShortText] = Field(default_factory=list, max_length=8)


class FeedbackOptions(_Model):
    """How a reader signals a result: buzzer and how long the text stays up."""

    beep: bool = True
    display_seconds: float = Field(default=3.0, ge=0, le=600)


class Tap(_Model):
    """One card presentation, made on the reader; `event_id` is unique forever."""

    v: Literal[1] = 1
    type: Literal["tap"] = "tap"
    event_id: UUID
    reader_id: ReaderId
    boot_id: UUID
    seq: int = Field(ge=0, le=2**63 - 1)
    card: CardId
    occurred_at: UtcDatetime
    clock_synced: bool
    mode: TapMode | None = None
    sig: str | None = Field(default=None, max_length=128)


class Ack(_Model):
    """The server's answer to a tap, sent after the outcome is committed."""

    v: Literal[1] = 1
    type: Literal["ack"] = "ack"
    event_id: UUID
    result: AckResult
    points: int = 0
    display: Display
    detail: str | None = Field(default=None, max_length=500)


class Status(_Model):
    """A reader's retained state; `offline` is also its last will.

    `outbox_depth` is None when unknown, as in the last will, which the broker
    sends long after it was written.
    """

    v: Literal[1] = 1
    type: Literal["status"] = "status"
    state: ReaderState
    boot_id: UUID
    agent_version: ShortText
    source: ShortText
    outbox_depth: int | None = Field(default=None, ge=0)
    oldest_pending_at: UtcDatetime | None = None
    clock_synced: bool = False


class Config(_Model):
    """Settings the server pushes to a reader (retained); applied live."""

    v: Literal[1] = 1
    type: Literal["config"] = "config"
    mode: TapMode = TapMode.CHECKIN
    room: ShortText = ""
    feedback: FeedbackOptions = Field(default_factory=FeedbackOptions)


Message = Annotated[Tap | Ack | Status | Config, Field(discriminator="type")]
