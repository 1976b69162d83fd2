"""Command and response APDUs (ISO 7816-4) and reading a card's identifier with them.

The card is reached through a `Transmit` function (one APDU out, one response
back), so the same reading steps serve any transport and the tests can drive
them with a hand-written card; further exchanges (the challenge-response of the
strong identity tier) plug in the same way.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from reader_agent.errors import CardReadError

IdEncoding = Literal["hex", "ascii"]

# PC/SC part 3 GET DATA: the contactless reader itself answers with the card's UID
# (ISO 14443 UID or PUPI, FeliCa IDm); the card never sees this command.
GET_UID = bytes.fromhex("FFCA000000")

# The wire format carries the UID as 2..64 upper-case hex digits.
MAX_ID_HEX_DIGITS = 64

_HEX_TEXT = re.compile(r"[0-9A-Fa-f]+")
_SW_OK = 0x9000

_SW_MEANINGS = {
    0x6281: "part of the returned data may be corrupted",
    0x6282: "end of file reached before Le bytes",
    0x6700: "wrong length",
    0x6982: "security status not satisfied",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A86: "incorrect P1-P2",
    0x6B00: "wrong parameters P1-P2",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}


@dataclass(frozen=True)
class Response:
    """A response APDU: data and the two status bytes."""

    data: bytes
    sw1: int
    sw2: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Response":
        """Split a raw response into data and status word."""
        if len(raw) < 2:
            # An empty answer is what a card pulled away mid-command leaves behind.
            raise CardReadError(
                f"response {raw.hex().upper() or '(empty)'} has no status word; "
                "was the card taken away mid-read?"
            )
        return cls(data=bytes(raw[:-2]), sw1=raw[-2], sw2=raw[-1])

    @property
    def sw(self) -> int:
        """The status word as one number, e.g. 0x9000."""
        return (self.sw1 << 8) | self.sw2

    @property
    def ok(self) -> bool:
        """True for 9000, the only status this module treats as success."""
        return self.sw == _SW_OK


Transmit = Callable[[bytes], Response]


class StatusWordError(CardReadError):
    """The card (or reader) answered a command with a status word other than 9000."""

    def __init__(self, apdu: bytes, response: Response) -> None:
        self.apdu = apdu
        self.response = response
        super().__init__(
            f"card answered {response.sw:04X} ({describe_sw(response.sw)}) "
            f"to APDU {apdu.hex().upper()}"
        )


def describe_sw(sw: int) -> str:
    """A short English reading of a status word for log lines."""
    if sw in _SW_MEANINGS:
        return _SW_MEANINGS[sw]
    if sw >> 8 == 0x61:
        return f"{sw & 0xFF} more bytes available"
    if sw >> 8 == 0x6C:
        return f"wrong Le, expected {sw & 0xFF}"
    if sw & 0xFFF0 == 0x63C0:
        return f"verification failed, {sw & 0x0F} tries left"
    return "unknown status"


def parse_apdu(text: str) -> bytes:
    """Parse a command APDU written in hex (spaces allowed) and check its length fields."""
    compact = "".join(text.split())
    if not compact or len(compact) % 2 or not _HEX_TEXT.fullmatch(compact):
        raise ValueError(f"APDU {text!r} is not an even number of hex digits")
    apdu = bytes.fromhex(compact)
    _check_apdu_structure(apdu)
    return apdu


def _check_apdu_structure(apdu: bytes) -> None:
    # ISO 7816-4 cases: 1 (header), 2 (Le), 3 (Lc data), 4 (Lc data Le), short or extended.
    size = len(apdu)
    if size < 4:
        raise ValueError(f"APDU {apdu.hex().upper()} is shorter than its 4-byte header")
    if size in (4, 5):
        return
    if apdu[4] != 0:
        lc = apdu[4]
        if size in (5 + lc, 6 + lc):
            return
        raise ValueError(
            f"APDU {apdu.hex().upper()}: Lc says {lc} data bytes but {size - 5} bytes follow it"
        )
    if size == 7:
        return  # extended Le only
    lc = int.from_bytes(apdu[5:7], "big")
    if size in (7 + lc, 9 + lc):
        return
    raise ValueError(
        f"APDU {apdu.hex().upper()}: extended Lc says {lc} data bytes but {size - 7} follow it"
    )


def exchange(transmit: Transmit, apdu: bytes, *, max_rounds: int = 16) -> Response:
    """Send one command and follow the card's 61xx / 6Cxx answers to the complete response.

    T=0 cards answer 61xx ("xx more bytes, ask with GET RESPONSE") and 6Cxx
    ("resend with Le=xx"); pcsc-lite passes those through, so the reader does it.
    Raises StatusWordError unless the final status is 9000.
    """
    data = b""
    command = apdu
    for _ in range(max_rounds):
        response = transmit(command)
        if response.sw1 == 0x61:
            data += response.data
            command = bytes([_get_response_class(apdu[0]), 0xC0, 0x00, 0x00, response.sw2])
            continue
        if response.sw1 == 0x6C and _is_short_with_le(apdu):
            command = _with_le(apdu, response.sw2)
            continue
        complete = Response(data + response.data, response.sw1, response.sw2)
        if not complete.ok:
            raise StatusWordError(apdu, complete)
        return complete
    raise CardReadError(f"card kept asking for more rounds after APDU {apdu.hex().upper()}")


def _get_response_class(cla: int) -> int:
    # Keep the logical channel of an interindustry class; proprietary classes
    # (b8 set, e.g. the reader's own FF) get the plain interindustry 00.
    return cla & 0x03 if cla < 0x80 else 0x00


def _is_short_with_le(apdu: bytes) -> bool:
    return len(apdu) == 5 or (len(apdu) > 5 and apdu[4] != 0 and len(apdu) == 6 + apdu[4])


def _with_le(apdu: bytes, le: int) -> bytes:
    if len(apdu) == 5:
        return apdu[:4] + bytes([le])
    return apdu[:-1] + bytes([le])


def read_uid(transmit: Transmit) -> bytes:
    """Ask a PC/SC contactless reader for the card's UID with GET DATA."""
    uid = exchange(transmit, GET_UID).data
    if not uid:
        raise CardReadError("GET DATA returned an empty UID")
    return uid


def read_identifier(transmit: Transmit, apdus: Sequence[bytes]) -> bytes:
    """Send the configured APDUs in order; the identifier is the data of the last response."""
    if not apdus:
        raise CardReadError(
            "contact card inserted but no APDUs are configured ([pcsc] apdus in reader.toml)"
        )
    response = Response(b"", 0x90, 0x00)
    for apdu in apdus:
        response = exchange(transmit, apdu)
    if not response.data:
        raise CardReadError(f"the last APDU {apdus[-1].hex().upper()} returned no data")
    return response.data


def encode_identifier(data: bytes, encoding: IdEncoding) -> str:
    """Turn identifier bytes into the wire format's upper-case hex text.

    `hex`: the bytes themselves. `ascii`: the bytes are text (an employee number
    such as "00012345"), stripped of NUL/0xFF/space padding; the text must be hex
    digits, and an odd count gets one leading zero so it fits the wire format.
    """
    if encoding == "hex":
        text = data.hex().upper()
    else:
        stripped = data.strip(b"\x00\xff \t\r\n")
        try:
            decoded = stripped.decode("ascii")
        except UnicodeDecodeError as exc:
            raise CardReadError(f"identifier {data.hex().upper()} is not ASCII text") from exc
        if not _HEX_TEXT.fullmatch(decoded):
            raise CardReadError(
                f"identifier {decoded!r} has characters other than 0-9 and A-F; "
                "use id_encoding = 'hex' for this card"
            )
        text = decoded.upper()
        if len(text) % 2:
            text = "0" + text
    if len(text) > MAX_ID_HEX_DIGITS:
        raise CardReadError(
            f"identifier of {len(text)} hex digits is longer than the {MAX_ID_HEX_DIGITS} allowed"
        )
    return text
