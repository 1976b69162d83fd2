"""Signing: HMAC over canonical JSON; any change to a signed message is detected."""

import json
import uuid
from datetime import UTC, datetime

import pytest

from protocol import CardId, CardTech, SignatureError, Tap, decode
from protocol.signing import canonical_json, sign, verify

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


def make_tap() -> Tap:
    return Tap(
        event_id=uuid.uuid4(),
        reader_id="room-101",
        boot_id=uuid.uuid4(),
        seq=7,
        card=CardId(tech=CardTech.ISO14443A, uid="04A1B2C3"),
        occurred_at=datetime(2026, 11, 21, 2, 0, tzinfo=UTC),
        clock_synced=True,
    )


def test_signed_message_verifies_and_still_decodes() -> None:
    payload = sign(make_tap(), KEY)
    verify(payload, KEY)
    assert isinstance(decode(payload), Tap)


def test_canonical_form_ignores_key_order_and_sig() -> None:
    a = {"b": 1, "a": "签到", "sig": "x"}
    assert canonical_json(a) == canonical_json({"a": "签到", "b": 1})
    assert canonical_json(a) == '{"a":"签到","b":1}'.encode()


@pytest.mark.parametrize(
    ("field", "value"), [("seq", 8), ("reader_id", "room-102"), ("extra", "added")]
)
def test_tampering_is_detected(field: str, value: object) -> None:
    obj = json.loads(sign(make_tap(), KEY))
    obj[field] = value
    with pytest.raises(SignatureError, match="does not match"):
        verify(json.dumps(obj), KEY)


def test_wrong_key_and_unsigned_are_refused() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify(sign(make_tap(), KEY), b"other key")
    with pytest.raises(SignatureError, match="not signed"):
        verify(make_tap().model_dump_json(), KEY)
