"""Codec: what is malformed is refused with a reason; what is valid is normalised."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from protocol import Ack, CardId, CardTech, MalformedMessage, Tap, decode, decode_as, encode

GOLDEN_TAP = json.loads(
    (Path(__file__).parents[2] / "contract" / "golden" / "tap_checkin.json").read_text()
)


def tap_with(**changes: object) -> bytes:
    obj = dict(GOLDEN_TAP)
    obj.update(changes)
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "JSON list"),
        (b'{"type": "tap"}', "missing protocol version"),
        (b'{"v": 2, "type": "tap"}', "unsupported protocol version 2"),
        (b'{"v": true, "type": "tap"}', "unsupported protocol version"),
        (b'{"v": 1, "type": "nope"}', "type"),
        (b'{"v": 1}', "type"),
        (tap_with(event_id="not-a-uuid"), "event_id"),
        (tap_with(seq=-1), "seq"),
        (tap_with(reader_id="bad/id"), "reader_id"),
        (tap_with(card={"tech": "iso14443a", "uid": "XYZ"}), "card.uid"),
        (tap_with(card={"tech": "iso14443a", "uid": "ABC"}), "card.uid"),
        (tap_with(card={"tech": "mifare", "uid": "04A1"}), "card.tech"),
        (tap_with(occurred_at="2026-11-21T01:58:03"), "occurred_at"),
        (tap_with(occurred_at="yesterday"), "occurred_at"),
        (tap_with(mode="party"), "mode"),
        # Valid RFC 3339, but past datetime's range once moved to UTC.
        (tap_with(occurred_at="9999-12-31T23:59:59-23:59"), "occurred_at"),
        (tap_with(occurred_at="0001-01-01T00:00:00+23:59"), "occurred_at"),
        (b"{" * 100_000, "exceeds"),
    ],
)
def test_malformed_payloads_name_the_problem(payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        decode(payload)


def test_deeply_nested_json_is_refused_not_crashing() -> None:
    with pytest.raises(MalformedMessage):
        decode(b"[" * 5000 + b"]" * 5000)


def test_decode_as_refuses_another_type() -> None:
    with pytest.raises(MalformedMessage, match="expected a 'ack' message"):
        decode_as(tap_with(), Ack)


def test_uid_is_normalised_to_upper_case() -> None:
    message = decode(tap_with(card={"tech": "iso14443a", "uid": "04a1b2"}))
    assert isinstance(message, Tap)
    assert message.card.uid == "04A1B2"


def test_times_are_held_in_utc_and_written_with_z() -> None:
    shanghai = timezone(timedelta(hours=8))
    tap = Tap(
        event_id=uuid.uuid4(),
        reader_id="r1",
        boot_id=uuid.uuid4(),
        seq=1,
        card=CardId(tech=CardTech.ISO14443A, uid="04A1"),
        occurred_at=datetime(2026, 11, 21, 10, 0, tzinfo=shanghai),
        clock_synced=True,
    )
    assert tap.occurred_at == datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
    assert tap.occurred_at.utcoffset() == timedelta(0)
    assert json.loads(encode(tap))["occurred_at"] == "2026-11-21T02:00:00Z"
    assert decode(encode(tap)) == tap
