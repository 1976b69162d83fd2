"""Turn what arrives on an MQTT topic into a tap submission or a reader status."""

from datetime import datetime
from uuid import UUID

from protocol import MalformedMessage, Status, Tap
from protocol.codec import M, decode_as, load_object
from server.services.readers import StatusReport
from server.services.taps import ReceivedTap, RejectedPayload, Submission


def readable_event_id(payload: bytes) -> UUID | None:
    """The event id of a payload that is otherwise broken, if one can be read."""
    try:
        value = load_object(payload).get("event_id")
        return UUID(value) if isinstance(value, str) else None
    except (MalformedMessage, ValueError):
        return None


def _decode(payload: bytes, kind: type[M]) -> M:
    """decode_as, with any failure at all reported as MalformedMessage."""
    try:
        return decode_as(payload, kind)
    except MalformedMessage:
        raise
    except Exception as exc:
        # A decoder bug must not take the worker's batch down with it: a time zone
        # pushing a date past year 9999 once escaped as OverflowError.
        raise MalformedMessage(f"undecodable: {type(exc).__name__}: {exc}") from exc


def tap_submission(topic_reader_id: str, payload: bytes, received_at: datetime) -> Submission:
    """Decode a tap; anything wrong with it becomes a RejectedPayload saying what."""
    try:
        tap = _decode(payload, Tap)
    except MalformedMessage as exc:
        return RejectedPayload(
            reason=f"malformed tap: {exc}",
            received_at=received_at,
            reader_id=topic_reader_id,
            event_id=readable_event_id(payload),
            raw=payload,
        )
    if tap.reader_id != topic_reader_id:
        # The topic is what the broker's ACL vouches for; the body may be wrong.
        return RejectedPayload(
            reason=(
                f"reader_id {tap.reader_id!r} in the tap does not match "
                f"the topic's reader {topic_reader_id!r}"
            ),
            received_at=received_at,
            reader_id=topic_reader_id,
            event_id=tap.event_id,
            raw=payload,
        )
    return ReceivedTap(tap, received_at, raw=payload)


def reader_status(reader_id: str, payload: bytes, received_at: datetime) -> StatusReport:
    """Decode a status message; raise MalformedMessage if it is not one."""
    return StatusReport(reader_id, _decode(payload, Status), received_at)
