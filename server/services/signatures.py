"""Decide whether a tap's signature and (boot_id, seq) let it in: a pure function, no I/O.

A reader provisioned with a key must sign every tap (`sig`, see protocol.signing);
a tap with a missing or wrong signature is refused. A signed tap must also be
newer than the last one accepted from the same boot: `seq` only grows within a
boot, so the same `boot_id` with a `seq` at or below the last one is a replay.
A tap from another boot is let in, since boot ids have no order and a reader's
outbox may still hold taps from before a restart.

Repeats come first and are not this module's business: a reader resending after
a reconnect repeats the same event id with the same seq, and must be answered
`duplicate` with the original outcome. The caller therefore answers event ids
it has recorded before calling `check_tap` (record_taps does, in
_skip_repeats); an old signed tap replayed verbatim is such a repeat and credits
nothing. What reaches `check_tap` with an old (boot_id, seq) carries a new
event id: a replay with the identity changed, which only the key could sign.

Readers without a key are not checked for replays: anyone who can publish on
their topic can make up any boot and seq, so the check would protect nothing.
"""

from dataclasses import dataclass
from uuid import UUID

from protocol import MalformedMessage, SignatureError, Tap
from protocol.codec import decode_as
from protocol.signing import verify


@dataclass(frozen=True)
class Position:
    """Where a reader's taps have got to: its boot and the seq within it."""

    boot_id: UUID
    seq: int


@dataclass(frozen=True)
class Accepted:
    """The tap may be recorded; `position` is the reader's position to store afterwards."""

    position: Position | None


@dataclass(frozen=True)
class Refused:
    """The tap must be stored as rejected, with this reason."""

    reason: str


Verdict = Accepted | Refused


def check_tap(payload: bytes, key: bytes | None, last: Position | None) -> Verdict:
    """Check a fresh tap's signature and replay against its reader's key and last position."""
    if key is None:
        return Accepted(None)
    try:
        verify(payload, key)
        tap = decode_as(payload, Tap)
    except SignatureError as exc:
        return Refused(f"bad signature: {exc}")
    except MalformedMessage as exc:
        return Refused(f"malformed tap: {exc}")
    here = Position(tap.boot_id, tap.seq)
    if last is not None and here.boot_id == last.boot_id and here.seq <= last.seq:
        return Refused(f"replay: seq {here.seq} of boot {here.boot_id} is not after seq {last.seq}")
    return Accepted(here)
