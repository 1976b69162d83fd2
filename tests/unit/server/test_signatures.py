"""check_tap: a keyed reader's taps need a valid signature and a seq newer than the last."""

import json
import uuid
from datetime import UTC, datetime

from protocol import CardId, CardTech, Tap
from protocol.codec import encode
from protocol.signing import sign, signature
from server.services.signatures import Accepted, Position, Refused, check_tap

KEY = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
BOOT = uuid.UUID("6f1c0000-0000-4000-8000-000000000001")
OTHER_BOOT = uuid.UUID("6f1c0000-0000-4000-8000-000000000002")


def make_tap(seq: int = 7, boot_id: uuid.UUID = BOOT) -> Tap:
    return Tap(
        event_id=uuid.uuid4(),
        reader_id="room-101",
        boot_id=boot_id,
        seq=seq,
        card=CardId(tech=CardTech.ISO14443A, uid="04A1B2C3"),
        occurred_at=datetime(2026, 11, 21, 2, 0, tzinfo=UTC),
        clock_synced=True,
    )


def test_a_reader_without_a_key_is_let_in_signed_or_not() -> None:
    assert check_tap(encode(make_tap()), None, Position(BOOT, 100)) == Accepted(None)
    assert check_tap(sign(make_tap(), KEY), None, None) == Accepted(None)


def test_a_valid_signature_is_accepted_at_its_position() -> None:
    assert check_tap(sign(make_tap(seq=7), KEY), KEY, None) == Accepted(Position(BOOT, 7))
    assert check_tap(sign(make_tap(seq=8), KEY), KEY, Position(BOOT, 7)) == Accepted(
        Position(BOOT, 8)
    )


def test_an_unsigned_tap_from_a_keyed_reader_is_refused() -> None:
    verdict = check_tap(encode(make_tap()), KEY, None)
    assert verdict == Refused("bad signature: message is not signed")


def test_a_tampered_or_foreign_signature_is_refused() -> None:
    signed = json.loads(sign(make_tap(), KEY))
    signed["card"]["uid"] = "DEADBEEF"
    tampered = json.dumps(signed).encode()
    foreign = sign(make_tap(), bytes(32))

    for payload in (tampered, foreign):
        assert check_tap(payload, KEY, None) == Refused("bad signature: signature does not match")


def test_a_seq_at_or_below_the_last_of_the_same_boot_is_a_replay() -> None:
    for seq in (7, 3, 0):
        verdict = check_tap(sign(make_tap(seq=seq), KEY), KEY, Position(BOOT, 7))
        assert isinstance(verdict, Refused)
        assert verdict.reason == f"replay: seq {seq} of boot {BOOT} is not after seq 7"


def test_another_boot_starts_afresh() -> None:
    # After a restart seq starts again; the outbox may also still hold older boots' taps.
    assert check_tap(sign(make_tap(seq=1, boot_id=OTHER_BOOT), KEY), KEY, Position(BOOT, 50)) == (
        Accepted(Position(OTHER_BOOT, 1))
    )


def test_a_signed_payload_that_is_no_tap_is_refused_as_malformed() -> None:
    body = {"type": "tap", "event_id": "not-a-uuid"}
    body["sig"] = signature(body, KEY)
    verdict = check_tap(json.dumps(body).encode(), KEY, None)
    assert isinstance(verdict, Refused)
    assert verdict.reason.startswith("malformed tap:")


def test_garbage_is_refused_without_raising() -> None:
    verdict = check_tap(b"\xff not json", KEY, None)
    assert isinstance(verdict, Refused)
