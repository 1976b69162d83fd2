"""Card keys of the strong identity tier: AN10922 diversification and the challenge-response.

The server holds a master key; each card's own AES-128 key is diversified from
it with NXP AN10922's AES-CMAC construction (input 0x01 ‖ UID ‖ AID ‖ system
identifier), so only the master key needs keeping and a card's key is never
stored. At a tap the challenge is the tap's own event id (16 bytes, unique
forever), so a recorded answer can never be replayed; the card answers
INTERNAL AUTHENTICATE with AES-CMAC(card key, challenge) and the server checks
it in constant time. Pure functions: no database, no MQTT.
"""

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final
from uuid import UUID

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from server.domain.display import DisplayText
from server.errors import DomainError

KEY_BYTES: Final = 16
BLOCK: Final = 16
# AN10922 AES-128: the diversification input is 1 to 31 bytes after the constant.
MAX_INPUT_BYTES: Final = 31
AES128_CONSTANT: Final = b"\x01"
# What Rollcall diversifies with: its own 3-byte application id and system name.
ROLLCALL_AID: Final = bytes.fromhex("524C43")  # "RLC"
ROLLCALL_SYSTEM_ID: Final = b"Rollcall"
RESPONSE_BYTES: Final = 16

# Keys published in specifications and card makers' manuals, or trivially guessed:
# a master key equal to one of them protects nothing.
KNOWN_KEYS: Final = frozenset(
    bytes.fromhex(text)
    for text in (
        "00112233445566778899AABBCCDDEEFF",  # AN10922's worked example
        "00000000000000000000000000000000",  # DESFire's factory AES key
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
        "000102030405060708090A0B0C0D0E0F",
        "2B7E151628AED2A6ABF7158809CF4F3C",  # NIST SP 800-38B / RFC 4493 examples
    )
)


class CardKeyError(DomainError):
    """A master key or card key that cannot be used (wrong size, a published value)."""


class CardTier(StrEnum):
    """How strongly a tap's card proved itself."""

    UID = "uid"  # only its UID: clonable, accepted where the strong tier is not required
    STRONG = "strong"  # a correct answer to the tap's challenge
    FAILED = "failed"  # an answer that does not match: a clone or a wrong key


def _aes_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - one block
    return encryptor.update(block) + encryptor.finalize()


def _shift_left(block: bytes) -> bytes:
    value = (int.from_bytes(block, "big") << 1) & ((1 << 128) - 1)
    return value.to_bytes(BLOCK, "big")


def _subkeys(key: bytes) -> tuple[bytes, bytes]:
    """CMAC's K1 and K2 (NIST SP 800-38B)."""
    rb = 0x87
    l_block = _aes_block(key, bytes(BLOCK))
    k1 = bytearray(_shift_left(l_block))
    if l_block[0] & 0x80:
        k1[-1] ^= rb
    k2 = bytearray(_shift_left(bytes(k1)))
    if k1[0] & 0x80:
        k2[-1] ^= rb
    return bytes(k1), bytes(k2)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def diversify(master_key: bytes, uid: bytes, aid: bytes, system_id: bytes) -> bytes:
    """AN10922 AES-128 key diversification: the card key for `uid` under `master_key`.

    M = 0x01 ‖ UID ‖ AID ‖ system identifier. AN10922 always works on 32 bytes:
    a shorter M gets 0x80 and zeros up to 32 and the last block is masked with K2,
    a 32-byte M is masked with K1; then CMAC's CBC over the two blocks.
    """
    _check_key(master_key, "master key")
    data = uid + aid + system_id
    if not 1 <= len(data) <= MAX_INPUT_BYTES:
        raise CardKeyError(
            f"diversification input is {len(data)} bytes; AN10922 allows 1 to {MAX_INPUT_BYTES}"
        )
    message = AES128_CONSTANT + data
    k1, k2 = _subkeys(master_key)
    if len(message) < 2 * BLOCK:
        padded = message + b"\x80" + bytes(2 * BLOCK - len(message) - 1)
        last_mask = k2
    else:
        padded = message
        last_mask = k1
    first, last = padded[:BLOCK], _xor(padded[BLOCK:], last_mask)
    state = _aes_block(master_key, first)
    return _aes_block(master_key, _xor(state, last))


def challenge_for(event_id: UUID) -> bytes:
    """The challenge a reader sends for the tap `event_id`: the id's 16 bytes."""
    return event_id.bytes


def card_response(card_key: bytes, challenge: bytes) -> bytes:
    """What a genuine card answers: AES-CMAC (RFC 4493) of the challenge under its key."""
    _check_key(card_key, "card key")
    mac = cmac.CMAC(algorithms.AES(card_key))
    mac.update(challenge)
    return mac.finalize()


def response_matches(card_key: bytes, challenge: bytes, response: bytes) -> bool:
    """Whether `response` is the card's answer to `challenge`, compared in constant time."""
    return hmac.compare_digest(card_response(card_key, challenge), response)


def _check_key(key: bytes, what: str) -> None:
    if len(key) != KEY_BYTES:
        raise CardKeyError(f"{what} must be {KEY_BYTES} bytes (32 hex digits), not {len(key)}")


def check_master_key(key: bytes) -> None:
    """Refuse a master key of the wrong size or one published somewhere (CardKeyError)."""
    _check_key(key, "card master key")
    if key in KNOWN_KEYS:
        raise CardKeyError("card master key is a published example or default value")


@dataclass(frozen=True)
class CardKeyring:
    """The master keys by version; cards personalised under an older one keep verifying."""

    masters: Mapping[int, bytes] = field(repr=False)
    current: int
    aid: bytes = ROLLCALL_AID
    system_id: bytes = ROLLCALL_SYSTEM_ID

    def __post_init__(self) -> None:
        """Check every key and that the current version is one of them."""
        if self.current not in self.masters:
            raise CardKeyError(f"no card master key of version {self.current}")
        for version, key in self.masters.items():
            if version < 1:
                raise CardKeyError(f"card master key versions start at 1, not {version}")
            check_master_key(key)

    def card_key(self, uid_hex: str, version: int | None = None) -> bytes:
        """The key of the card with UID `uid_hex` under master key `version` (default: current)."""
        wanted = self.current if version is None else version
        master = self.masters.get(wanted)
        if master is None:
            raise CardKeyError(f"no card master key of version {wanted}")
        return diversify(master, bytes.fromhex(uid_hex), self.aid, self.system_id)

    def answering_version(
        self, uid_hex: str, likely: Sequence[int | None], challenge: bytes, response: bytes
    ) -> int | None:
        """The master key version under which `response` answers `challenge`, or None.

        The versions in `likely` first (the one the card last proved, the one last
        issued to it), then the keyring's others, newest first: a card issued a key
        it was never written keeps answering under its old one. Trying several
        versions gives a forger no more than one chance in 2^128 per version.
        """
        order = [v for v in likely if v is not None and v in self.masters]
        order += sorted(set(self.masters) - set(order), reverse=True)
        for version in order:
            try:
                card_key = self.card_key(uid_hex, version)
            except CardKeyError:
                return None  # an identifier too long to diversify was never keyed
            if response_matches(card_key, challenge, response):
                return version
        return None


def clone_refused_display() -> DisplayText:
    """What the reader shows when a card fails the strong tier where it is required."""
    return DisplayText("卡片认证失败", ("疑似复制卡", "请联系管理员"))
