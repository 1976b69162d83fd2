"""What the ingest tells the screens after a batch commits: taps by id, never personal data.

The same events travel in-process (through the EventHub) and between processes
as one compact JSON message per batch on `topics.server_events()`: each event a
row `[reader_id, event_id, mode, result, member_id, session_id]`. That topic is
server-to-server, outside the reader contract, so its model lives here rather
than in `protocol`. Building and encoding run on the ingest worker's thread for
every batch, so they use plain dataclasses and `json`; only decoding validates.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol import AckResult, TapMode
from server.kiosk.errors import KioskError
from server.services.taps import Outcome

MAX_EVENTS = 10_000
_SCREEN_MODES = frozenset({TapMode.CHECKIN, TapMode.CHECKOUT})


@dataclass(frozen=True, slots=True)
class TapEvent:
    """One committed tap a screen may care about: a kiosk tap, or a check-in or check-out."""

    reader_id: str | None
    event_id: UUID | None
    mode: TapMode
    result: AckResult
    member_id: int | None = None
    session_id: int | None = None

    @property
    def is_kiosk(self) -> bool:
        """A new tap on a kiosk-mode reader (known card or not; not a resend)."""
        return self.mode is TapMode.KIOSK and self.result is not AckResult.DUPLICATE

    @property
    def is_arrival(self) -> bool:
        """A check-in or check-out that changed a session's attendance."""
        return self.session_id is not None and self.result is AckResult.ACCEPTED


def events_from(outcomes: Iterable[Outcome]) -> list[TapEvent]:
    """The events worth telling the screens about among a batch's outcomes."""
    events: list[TapEvent] = []
    for o in outcomes:
        mode = o.mode
        if mode is TapMode.KIOSK:
            if o.result is AckResult.DUPLICATE:
                continue
        elif (
            mode not in _SCREEN_MODES or o.session_id is None or o.result is not AckResult.ACCEPTED
        ):
            continue
        events.append(TapEvent(o.reader_id, o.event_id, mode, o.result, o.member_id, o.session_id))
    return events


def encode_batch(origin: str, events: Sequence[TapEvent]) -> bytes:
    """The MQTT payload for a batch's events."""
    rows = [
        [
            e.reader_id,
            str(e.event_id) if e.event_id else None,
            e.mode.value,
            e.result.value,
            e.member_id,
            e.session_id,
        ]
        for e in events
    ]
    body = {"v": 1, "type": "tap_events", "origin": origin, "events": rows}
    return json.dumps(body, separators=(",", ":")).encode()


_Row = tuple[
    Annotated[str, Field(max_length=64)] | None,
    UUID | None,
    TapMode,
    AckResult,
    int | None,
    int | None,
]


class _Batch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int
    type: str
    origin: str = Field(max_length=64)
    events: list[_Row] = Field(max_length=MAX_EVENTS)


@dataclass(frozen=True)
class EventBatch:
    """A decoded MQTT payload: which process sent it, and its events."""

    origin: str
    events: list[TapEvent]


def decode_batch(payload: bytes) -> EventBatch:
    """Parse an MQTT payload; KioskError if it is not a v1 event batch."""
    try:
        batch = _Batch.model_validate_json(payload)
    except ValidationError as exc:
        raise KioskError(f"not a tap event batch: {exc.error_count()} errors") from exc
    if batch.v != 1 or batch.type != "tap_events":
        raise KioskError(f"not a v1 tap event batch: {batch.type} v{batch.v}")
    return EventBatch(batch.origin, [TapEvent(*row) for row in batch.events])
