"""AN10922 diversification against NXP's own example, and the challenge-response check."""

from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain.cardkeys import (
    KNOWN_KEYS,
    CardKeyError,
    CardKeyring,
    card_response,
    challenge_for,
    check_master_key,
    diversify,
    response_matches,
)

MASTER = bytes.fromhex("8E1F2A93C4D5B6E7F8091A2B3C4D5E6F")


def test_an10922_worked_example() -> None:
    # AN10922 section 2.2.1: master key, 7-byte UID, 3-byte AID, system identifier "NXP Abu".
    key = diversify(
        bytes.fromhex("00112233445566778899AABBCCDDEEFF"),
        bytes.fromhex("04782E21801D80"),
        bytes.fromhex("3042F5"),
        b"NXP Abu",
    )
    assert key.hex().upper() == "A8DD63A3B89D54B37CA802473FDA9175"


@pytest.mark.parametrize("uid_bytes", [5, 10, 20])
def test_inputs_of_two_blocks_equal_plain_cmac(uid_bytes: int) -> None:
    # From 17 to 32 bytes, AN10922's padding (K2) and no padding (K1, at 32) are CMAC's own.
    from cryptography.hazmat.primitives import cmac
    from cryptography.hazmat.primitives.ciphers import algorithms

    uid = bytes(range(1, uid_bytes + 1))
    mac = cmac.CMAC(algorithms.AES(MASTER))
    mac.update(b"\x01" + uid + b"RLC" + b"Rollcall")
    assert diversify(MASTER, uid, b"RLC", b"Rollcall") == mac.finalize()


def test_short_inputs_are_padded_to_32_bytes_unlike_plain_cmac() -> None:
    # AN10922 pads 0x01 ‖ D to two blocks even when it fits in one: the key is not CMAC(M).
    from cryptography.hazmat.primitives import cmac
    from cryptography.hazmat.primitives.ciphers import algorithms

    mac = cmac.CMAC(algorithms.AES(MASTER))
    mac.update(b"\x01\x04\x11")
    assert diversify(MASTER, b"\x04", b"\x11", b"") != mac.finalize()


@pytest.mark.parametrize("size", [0, 32])
def test_input_outside_1_to_31_bytes_is_refused(size: int) -> None:
    with pytest.raises(CardKeyError, match="1 to 31"):
        diversify(MASTER, bytes(size), b"", b"")


def test_rfc4493_cmac_example() -> None:
    # RFC 4493 example 2: the 16-byte message.
    key = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
    message = bytes.fromhex("6BC1BEE22E409F96E93D7E117393172A")
    assert card_response(key, message).hex() == "070a16b46b4d4144f79bdd9dd04a287c"


def test_the_challenge_is_the_event_id() -> None:
    event_id = uuid4()
    assert challenge_for(event_id) == event_id.bytes


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16))
def test_only_the_genuine_answer_matches(challenge: bytes, other: bytes) -> None:
    key = diversify(MASTER, b"\x04\x11\x22\x33", b"RLC", b"Rollcall")
    answer = card_response(key, challenge)
    assert response_matches(key, challenge, answer)
    assert response_matches(key, challenge, other) == (other == answer)


def test_keyring_finds_the_version_a_card_answers_under_whatever_was_expected() -> None:
    old = bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0")
    ring = CardKeyring({1: old, 2: MASTER}, current=2)
    challenge = uuid4().bytes
    under_old = card_response(ring.card_key("04A1B2C3", 1), challenge)
    under_new = card_response(ring.card_key("04A1B2C3", 2), challenge)

    assert ring.answering_version("04A1B2C3", (1,), challenge, under_old) == 1
    # Issued version 2 but never written: it still answers under 1.
    assert ring.answering_version("04A1B2C3", (None, 2), challenge, under_old) == 1
    assert ring.answering_version("04A1B2C3", (1, 2), challenge, under_new) == 2
    assert ring.answering_version("04A1B2C3", (), challenge, under_new) == 2
    # Another card's answer, a wrong answer, a version the ring does not hold.
    assert ring.answering_version("04A1B2C4", (1,), challenge, under_old) is None
    assert ring.answering_version("04A1B2C3", (1, 2), challenge, bytes(16)) is None
    assert (
        CardKeyring({2: MASTER}, current=2).answering_version(
            "04A1B2C3", (1,), challenge, under_old
        )
        is None
    )
    assert ring.card_key("04A1B2C3") == ring.card_key("04A1B2C3", 2)


def test_the_likely_versions_are_tried_first() -> None:
    tried: list[int] = []

    class Counting(CardKeyring):
        def card_key(self, uid_hex: str, version: int | None = None) -> bytes:
            tried.append(version or self.current)
            return super().card_key(uid_hex, version)

    third = bytes.fromhex("1F2E3D4C5B6A79889706A5B4C3D2E1F0")
    ring = Counting({1: bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0"), 2: MASTER, 3: third}, 3)
    challenge = uuid4().bytes
    answer = card_response(ring.card_key("04A1B2C3", 1), challenge)
    tried.clear()
    assert ring.answering_version("04A1B2C3", (1, 3), challenge, answer) == 1
    assert tried == [1]
    tried.clear()
    assert ring.answering_version("04A1B2C3", (None, 2), challenge, answer) == 1
    assert tried == [2, 3, 1]


@pytest.mark.parametrize("key", sorted(KNOWN_KEYS))
def test_published_keys_are_refused(key: bytes) -> None:
    with pytest.raises(CardKeyError, match="published"):
        check_master_key(key)
    with pytest.raises(CardKeyError):
        CardKeyring({1: key}, current=1)


def test_keys_must_be_16_bytes_and_the_current_version_must_exist() -> None:
    with pytest.raises(CardKeyError, match="16 bytes"):
        check_master_key(bytes(15))
    with pytest.raises(CardKeyError, match="version 3"):
        CardKeyring({1: MASTER}, current=3)
    assert "8E1F" not in repr(CardKeyring({1: MASTER}, current=1)).upper()


def test_an_identifier_too_long_to_diversify_fails_instead_of_raising() -> None:
    ring = CardKeyring({1: MASTER}, current=1)
    long_uid = "45" * 32  # a contact card's 32-byte identifier
    with pytest.raises(CardKeyError, match="1 to 31"):
        ring.card_key(long_uid)
    assert ring.answering_version(long_uid, (1,), bytes(16), bytes(16)) is None
