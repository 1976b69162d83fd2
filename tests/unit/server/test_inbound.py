"""Turning MQTT payloads into submissions."""

import json
import uuid
from datetime import UTC, datetime

import pytest

from protocol import MalformedMessage, ReaderState, Status, encode
from server.ingest.inbound import readable_event_id, reader_status, tap_submission
from server.sample import TapBuilder
from server.services.taps import ReceivedTap, RejectedPayload

AT = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)


def test_valid_tap() -> None:
    tap = TapBuilder("room-1", "04A1B2C3", AT).tap()

    payload = encode(tap)

    submission = tap_submission("room-1", payload, AT)

    assert submission == ReceivedTap(tap, AT, raw=payload)


def test_reader_mismatch_is_rejected_for_the_topic_reader() -> None:
    tap = TapBuilder("room-2", "04A1B2C3", AT).tap()

    submission = tap_submission("room-1", encode(tap), AT)

    assert isinstance(submission, RejectedPayload)
    assert submission.reader_id == "room-1"
    assert submission.event_id == tap.event_id
    assert "does not match" in submission.reason


@pytest.mark.parametrize(
    ("payload", "has_event_id"),
    [
        (b"not json", False),
        (b"\xff\xfe", False),
        (b"[1, 2]", False),
        (json.dumps({"v": 1, "type": "tap", "event_id": "E"}).encode(), False),
        (json.dumps({"v": 1, "type": "tap", "event_id": str(uuid.UUID(int=7))}).encode(), True),
        (json.dumps({"v": 2, "type": "tap", "event_id": str(uuid.UUID(int=7))}).encode(), False),
    ],
)
def test_malformed_taps_keep_what_can_be_read(payload: bytes, has_event_id: bool) -> None:
    submission = tap_submission("room-1", payload, AT)

    assert isinstance(submission, RejectedPayload)
    assert submission.reason.startswith("malformed tap: ")
    assert submission.raw == payload
    assert (submission.event_id is not None) == has_event_id


def test_readable_event_id() -> None:
    assert readable_event_id(b'{"v": 1, "event_id": 5}') is None


def test_status() -> None:
    status = Status(
        state=ReaderState.ONLINE, boot_id=uuid.uuid4(), agent_version="0.1", source="pcsc"
    )

    report = reader_status("room-1", encode(status), AT)

    assert (report.reader_id, report.status, report.received_at) == ("room-1", status, AT)
    with pytest.raises(MalformedMessage):
        reader_status("room-1", b"{}", AT)
