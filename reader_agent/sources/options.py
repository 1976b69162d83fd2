"""Settings of the hardware card sources, as they appear in reader.toml."""

import re

from pydantic import BaseModel, Field, field_validator

from reader_agent.sources.apdu import IdEncoding, parse_apdu

_NFC_TARGET = re.compile(r"^(106|212|424|848)[ABF]$")


class PcscOptions(BaseModel):
    """How the `pcsc` source picks a reader and reads a card's identifier."""

    reader: str = Field(default="", description="substring of the reader name; empty: first reader")
    apdus: list[str] = Field(
        default_factory=list,
        description="contact cards: APDUs in hex sent in order (e.g. SELECT by AID, then "
        "READ BINARY); the identifier is the data of the last response",
    )
    id_encoding: IdEncoding = Field(
        default="hex",
        description="'hex': the identifier bytes as hex; 'ascii': the bytes are text "
        "made of hex digits (e.g. an employee number)",
    )
    poll_seconds: float = Field(
        default=0.2, gt=0, le=5, description="how long one wait for a reader or card event lasts"
    )
    retry_max_seconds: float = Field(
        default=5.0, gt=0, description="longest pause between attempts to reach pcscd again"
    )
    # The strong identity tier (docs/deploying.md, "Card identity tiers").
    challenge_response: bool = Field(
        default=False,
        description="challenge each card with INTERNAL AUTHENTICATE and send its answer",
    )
    auth_keyref: int = Field(
        default=0, ge=0, le=255, description="P2 of INTERNAL AUTHENTICATE: the card key's number"
    )
    auth_apdus: list[str] = Field(
        default_factory=list,
        description="APDUs sent before the challenge and before personalising "
        "(e.g. SELECT of the card application)",
    )
    key_write_header: str = Field(
        default="80D800",
        pattern=r"^[0-9A-Fa-f]{6}$",
        description="CLA INS P1 of the command `personalise` writes the card key with; "
        "P2 is auth_keyref",
    )

    @field_validator("apdus", "auth_apdus")
    @classmethod
    def _apdus_are_well_formed(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_apdu(text)
        return value

    def command_apdus(self) -> list[bytes]:
        """The configured APDUs as bytes, in order."""
        return [parse_apdu(text) for text in self.apdus]

    def auth_setup_apdus(self) -> list[bytes]:
        """The APDUs sent before the challenge or the key write, as bytes."""
        return [parse_apdu(text) for text in self.auth_apdus]


class NfcpyOptions(BaseModel):
    """How the `nfcpy` source opens its frontend."""

    device: str = Field(
        default="usb",
        min_length=1,
        description="nfcpy path: usb, usb:072f:2200, tty:AMA0:pn532, udp:host:port",
    )
    targets: list[str] = Field(
        default_factory=lambda: ["106A", "106B", "212F"],
        min_length=1,
        description="nfcpy target bitrates/types to sense",
    )
    poll_seconds: float = Field(
        default=0.2,
        gt=0,
        le=5,
        description="shortest time between two looks for a tag, and between two checks "
        "that a tag is still there",
    )
    retry_max_seconds: float = Field(
        default=10.0, gt=0, description="longest pause between attempts to reopen the device"
    )

    @field_validator("targets")
    @classmethod
    def _targets_are_known(cls, value: list[str]) -> list[str]:
        for target in value:
            if not _NFC_TARGET.fullmatch(target):
                raise ValueError(
                    f"target {target!r} is not a bitrate and type such as 106A, 106B or 212F"
                )
        return value
