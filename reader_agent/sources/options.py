"""Settings of the hardware card sources, as they appear in reader.toml."""

from pydantic import BaseModel, Field


class PcscOptions(BaseModel):
    """How the `pcsc` source picks a reader and reads a card's identifier."""

    reader: str = Field(default="", description="substring of the reader name; empty: first reader")
    apdus: list[str] = Field(
        default_factory=list,
        description="contact cards: APDUs in hex sent in order (e.g. SELECT by AID, then "
        "READ BINARY); the identifier is the data of the last response",
    )
    id_encoding: str = Field(default="hex", description="'hex' or 'ascii' for the identifier")
    poll_seconds: float = Field(default=0.2, gt=0, description="how often to look for readers")


class NfcpyOptions(BaseModel):
    """How the `nfcpy` source opens its frontend."""

    device: str = Field(
        default="usb", description="nfcpy path: usb, usb:072f:2200, tty:AMA0, udp:host:port"
    )
    targets: list[str] = Field(
        default_factory=lambda: ["106A", "106B", "212F"],
        description="nfcpy target bitrates/types to sense",
    )
