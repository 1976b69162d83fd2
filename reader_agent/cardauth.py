"""The reader's side of the strong identity tier: challenge a card, and personalise one.

The reader never holds the master key. At a tap it sends the card INTERNAL
AUTHENTICATE (00 88 00 <keyref> 10 <challenge> 00) with the tap's own event id
as the 16-byte challenge and forwards the answer in `card.auth`; the server,
which can derive the card's key, decides. A card without a key (a UID clone)
answers with an error status and the tap goes out as UID-only.

Personalising writes the card key the server derived for this card's UID
(`rollcall cards personalise-key --out FILE`, or a directory of them from
`--reissue --out-dir DIR` after a master key rotation) with a configurable
command (CLA INS P1 from `key_write_header`, P2 = keyref, data = the 16-byte key).
"""

import logging
import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from uuid import UUID

from protocol import CardAuth, CardTech
from reader_agent.errors import CardReadError, ConfigError
from reader_agent.sources.apdu import StatusWordError, Transmit, describe_sw, exchange
from reader_agent.sources.options import PcscOptions

log = logging.getLogger(__name__)

INTERNAL_AUTHENTICATE: Final = bytes.fromhex("0088")
CHALLENGE_BYTES: Final = 16
KEY_BYTES: Final = 16


def challenge_for(event_id: UUID) -> bytes:
    """The challenge for the tap `event_id`: its 16 bytes, as the server recomputes it."""
    return event_id.bytes


def internal_authenticate(keyref: int, challenge: bytes) -> bytes:
    """INTERNAL AUTHENTICATE: 00 88 00 <keyref> Lc <challenge> 00 (Le: whatever the card has)."""
    return INTERNAL_AUTHENTICATE + bytes([0x00, keyref, len(challenge)]) + challenge + b"\x00"


@dataclass(frozen=True)
class ChallengeResponse:
    """An Authenticator for the pcsc source: the card's answer to the tap's challenge."""

    keyref: int = 0
    setup_apdus: Sequence[bytes] = ()

    @classmethod
    def from_options(cls, options: PcscOptions) -> "ChallengeResponse":
        """The challenge settings of `[pcsc]` in reader.toml."""
        return cls(options.auth_keyref, tuple(options.auth_setup_apdus()))

    def __call__(
        self, transmit: Transmit, tech: CardTech, uid: str, event_id: UUID
    ) -> CardAuth | None:
        """Challenge the card; None when it has no key to answer with (a UID-only tap)."""
        challenge = challenge_for(event_id)
        try:
            for apdu in self.setup_apdus:
                exchange(transmit, apdu)
            response = exchange(transmit, internal_authenticate(self.keyref, challenge))
        except StatusWordError as exc:
            # A card with no key (or a clone of the UID alone) says so with a status word.
            log.info("card %s did not answer the challenge (%s): UID-only tap", uid, exc)
            return None
        if not response.data:
            log.info("card %s answered the challenge with no data: UID-only tap", uid)
            return None
        return CardAuth(challenge=challenge.hex(), response=response.data.hex())


@dataclass(frozen=True)
class CardKeyFile:
    """What `rollcall cards personalise-key --out` wrote: one card's UID and key."""

    uid: str
    key: bytes = field(repr=False)
    key_version: int
    tech: str | None = None
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def read(cls, path: Path) -> "CardKeyFile":
        """Read and check a key file; ConfigError names what is wrong, never the key."""
        try:
            with path.open("rb") as stream:
                values = tomllib.load(stream)
        except OSError as exc:
            raise ConfigError(f"key file {path} cannot be read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"key file {path} is not what personalise-key writes: {exc}"
            ) from None
        uid, key_hex, version = values.get("uid"), values.get("key"), values.get("key_version")
        tech = values.get("tech")
        if not isinstance(uid, str) or not isinstance(key_hex, str) or not isinstance(version, int):
            raise ConfigError(f"key file {path} lacks uid, key or key_version")
        try:
            key = bytes.fromhex(key_hex)
        except ValueError:
            raise ConfigError(f"key file {path}: the key is not hex") from None
        if len(key) != KEY_BYTES:
            raise ConfigError(f"key file {path}: the key is not {KEY_BYTES} bytes")
        return cls(uid.upper(), key, version, tech if isinstance(tech, str) else None, path)

    def erase(self) -> None:
        """Overwrite the file it was read from with zeros, then remove it (written: not needed)."""
        if self.path is None:
            return
        try:
            with self.path.open("r+b") as stream:
                stream.write(bytes(self.path.stat().st_size))
                stream.flush()
                os.fsync(stream.fileno())
            self.path.unlink()
        except OSError as exc:
            raise ConfigError(f"key file {self.path} could not be erased: {exc.strerror}") from None


def read_key_dir(directory: Path) -> list[CardKeyFile]:
    """Every `*.key` file in `directory` (as `personalise-key --reissue --out-dir` writes them)."""
    if not directory.is_dir():
        raise ConfigError(f"key directory {directory} is not a directory")
    try:
        paths = sorted(directory.glob("*.key"))
    except OSError as exc:
        raise ConfigError(f"key directory {directory} cannot be read: {exc.strerror}") from None
    if not paths:
        raise ConfigError(f"key directory {directory} holds no .key files")
    return [CardKeyFile.read(path) for path in paths]


@dataclass
class Personaliser:
    """An Authenticator that writes to each card put on the reader the key file for its UID."""

    key_files: dict[str, CardKeyFile]  # by UID; the caller may take written ones off
    write_header: bytes
    keyref: int = 0
    setup_apdus: Sequence[bytes] = ()
    # What happened to the last card: the key file written to it, or why none was.
    written: CardKeyFile | None = None
    refusal: str | None = None

    @classmethod
    def from_options(cls, key_files: Iterable[CardKeyFile], options: PcscOptions) -> "Personaliser":
        """A personaliser of these cards with `[pcsc]`'s keyref, setup APDUs and write command."""
        return cls(
            by_uid(key_files),
            bytes.fromhex(options.key_write_header),
            options.auth_keyref,
            tuple(options.auth_setup_apdus()),
        )

    @property
    def written_uid(self) -> str | None:
        """The UID of the last card if its key was written to it."""
        return self.written.uid if self.written is not None else None

    def write_key_apdu(self, key_file: CardKeyFile) -> bytes:
        """CLA INS P1 from the settings, P2 = keyref, Lc = 16, the key."""
        return self.write_header + bytes([self.keyref, KEY_BYTES]) + key_file.key

    def __call__(
        self, transmit: Transmit, tech: CardTech, uid: str, event_id: UUID
    ) -> CardAuth | None:
        """Write the key if there is one for this card; remember what happened."""
        del event_id  # personalising is not a tap
        self.written = None
        key_file = self.key_files.get(uid)
        if key_file is None:
            # A key diversified for another UID would make this card fail every challenge.
            if len(self.key_files) == 1:
                (only,) = self.key_files
                self.refusal = f"card {uid} is on the reader, but the key file is for {only}"
            else:
                self.refusal = f"card {uid} is on the reader, but no key file is for it"
            return None
        try:
            for apdu in self.setup_apdus:
                exchange(transmit, apdu)
            exchange(transmit, self.write_key_apdu(key_file))
        except StatusWordError as exc:
            # Not str(exc): it quotes the APDU, and this one carries the key.
            sw = exc.response.sw
            self.refusal = f"the card refused the key with status {sw:04X} ({describe_sw(sw)})"
            return None
        except CardReadError:
            # Its text may quote the APDU, key and all.
            self.refusal = "the card could not be written: taken away or not answering"
            return None
        self.written = key_file
        self.refusal = None
        return None


def by_uid(key_files: Iterable[CardKeyFile]) -> dict[str, CardKeyFile]:
    """Key files by their card's UID; ConfigError if two are for one card."""
    found: dict[str, CardKeyFile] = {}
    for key_file in key_files:
        if key_file.uid in found:
            raise ConfigError(
                f"two key files are for card {key_file.uid}: {found[key_file.uid].path} and "
                f"{key_file.path}"
            )
        found[key_file.uid] = key_file
    return found
