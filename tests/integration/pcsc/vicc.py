"""A virtual smart card that plugs into pcscd's vpcd driver over its TCP socket.

vpcd (vsmartcard) listens on 127.0.0.1:35963; a card connects as the client.
Every message is a 2-byte big-endian length and a payload. A 1-byte payload is
a control message: 00 power off, 01 power on, 02 reset (no answer to these),
04 "send your ATR". Longer payloads are command APDUs, answered with the
response data and the status word. Closing the socket takes the card away.
Debian's own `vicc` does not run on Python 3, so the tests carry this one.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

log = logging.getLogger(__name__)

VPCD_PORT = 0x8C7B  # 35963, the port of vpcd's first slot

CTRL_OFF = 0x00
CTRL_ON = 0x01
CTRL_RESET = 0x02
CTRL_ATR = 0x04

SW_OK = b"\x90\x00"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_FILE_NOT_FOUND = b"\x6a\x82"
SW_WRONG_P1P2 = b"\x6b\x00"
SW_CONDITIONS_NOT_SATISFIED = b"\x69\x85"
SW_WRONG_LENGTH = b"\x67\x00"
SW_REFERENCED_DATA_NOT_FOUND = b"\x6a\x88"

# Answers an APDU with response data + SW, or None to vanish (card pulled away).
Responder = Callable[[bytes], bytes | None]


def with_tck(atr_without_tck: bytes) -> bytes:
    """Append the check byte: the XOR of every byte after TS."""
    tck = 0
    for byte in atr_without_tck[1:]:
        tck ^= byte
    return atr_without_tck + bytes([tck])


def storage_card_atr(standard: int, card_name: bytes = b"\x00\x01") -> bytes:
    """A PC/SC part 3 ATR for a contactless storage card (standard byte SS, name NN NN)."""
    historical = b"\x80\x4f\x0c\xa0\x00\x00\x03\x06" + bytes([standard]) + card_name + bytes(4)
    return with_tck(b"\x3b\x8f\x80\x01" + historical)


def iso14443_4_atr(historical: bytes) -> bytes:
    """A PC/SC part 3 ATR for an ISO 14443-4 card: 3B 8n 80 01, historical bytes, TCK."""
    return with_tck(bytes([0x3B, 0x80 | len(historical), 0x80, 0x01]) + historical)


# A contact JavaCard-style ATR (T=1, with TA1/TC1 and a TA3): nothing like PC/SC part 3.
CONTACT_ATR = with_tck(bytes.fromhex("3BD518008131FE7D8073C82110"))


def contactless_responder(uid: bytes) -> Responder:
    """Answers the reader's GET DATA (FF CA 00 00 00) with the UID, like a PC/SC part 3 reader."""

    def respond(apdu: bytes) -> bytes:
        if apdu[:4] == b"\xff\xca\x00\x00":
            return uid + SW_OK
        if apdu[:2] == b"\xff\xca":
            return SW_WRONG_P1P2
        return SW_INS_NOT_SUPPORTED

    return respond


@dataclass
class ContactApplet:
    """A contact card with one application holding one transparent file (the employee number).

    `t0_get_response`: answer SELECT with 61xx so the reader has to send GET RESPONSE,
    the way T=0 cards hand back their FCI.
    """

    aid: bytes
    content: bytes
    t0_get_response: bool = False
    selected: bool = False
    _pending: bytes = field(default=b"", repr=False)

    def respond(self, apdu: bytes) -> bytes:  # noqa: PLR0911 - one answer per case reads best
        """Answer SELECT by AID, GET RESPONSE and READ BINARY."""
        cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
        del cla
        if ins == 0xA4 and p1 == 0x04:
            lc = apdu[4]
            if apdu[5 : 5 + lc] != self.aid:
                self.selected = False
                return SW_FILE_NOT_FOUND
            self.selected = True
            fci = b"\x6f\x08\x84\x06" + self.aid[:6].ljust(6, b"\x00")
            if self.t0_get_response:
                self._pending = fci
                return bytes([0x61, len(fci)])
            return fci + SW_OK
        if ins == 0xC0:
            data, self._pending = self._pending, b""
            return data + SW_OK if data else SW_CONDITIONS_NOT_SATISFIED
        if ins == 0xB0:
            if not self.selected:
                return SW_CONDITIONS_NOT_SATISFIED
            offset = (p1 << 8) | p2
            le = apdu[4] if len(apdu) > 4 else 0
            data = self.content[offset : offset + (le or 256)]
            return data + SW_OK
        return SW_INS_NOT_SUPPORTED


@dataclass
class KeyedCard:
    """A contactless card with one AES-128 key slot: the strong tier's card, or its clone.

    Answers GET DATA with its UID like a PC/SC reader; takes its key with the
    key-write command (CLA INS P1 `write_header`, P2 = keyref, Lc = 16, key) and
    answers INTERNAL AUTHENTICATE (00 88 00 keyref Lc challenge Le) with
    AES-CMAC(key, challenge). With no key (a clone of the UID alone) it answers
    6A88, referenced data not found.
    """

    uid: bytes
    key: bytes | None = field(default=None, repr=False)
    keyref: int = 0
    write_header: bytes = b"\x80\xd8\x00"

    def respond(self, apdu: bytes) -> bytes:  # noqa: PLR0911 - one answer per case reads best
        """Answer GET DATA, the key write and INTERNAL AUTHENTICATE."""
        if apdu[:4] == b"\xff\xca\x00\x00":
            return self.uid + SW_OK
        if apdu[:3] == self.write_header:
            if apdu[3] != self.keyref:
                return SW_REFERENCED_DATA_NOT_FOUND
            if len(apdu) != 5 + 16 or apdu[4] != 16:
                return SW_WRONG_LENGTH
            self.key = bytes(apdu[5:21])
            return SW_OK
        if apdu[:2] == b"\x00\x88":
            if apdu[3] != self.keyref or self.key is None:
                return SW_REFERENCED_DATA_NOT_FOUND
            lc = apdu[4]
            if len(apdu) < 5 + lc:
                return SW_WRONG_LENGTH
            mac = cmac.CMAC(algorithms.AES(self.key))
            mac.update(bytes(apdu[5 : 5 + lc]))
            return mac.finalize() + SW_OK
        return SW_INS_NOT_SUPPORTED


# ISO 14443-4 type A (a DESFire-like card): the strong tier's challenge needs APDUs.
KEYED_CARD_ATR = iso14443_4_atr(b"\x80")


def vanishing_responder(apdu: bytes) -> None:
    """A card that is pulled off the reader the moment it is spoken to."""
    del apdu


class VirtualCard:
    """One card for vpcd: `insert()` puts it on the reader, `remove()` takes it away.

    `stay_on_reader`: when pcscd goes away (restart), keep reconnecting, the way a
    card lying on a reader is still there when the daemon comes back.
    """

    def __init__(
        self,
        atr: bytes,
        responder: Responder,
        *,
        host: str = "127.0.0.1",
        port: int = VPCD_PORT,
        stay_on_reader: bool = False,
    ) -> None:
        self.atr = atr
        self.responder = responder
        self.host = host
        self.port = port
        self.stay_on_reader = stay_on_reader
        self.apdus: list[bytes] = []
        self.vanished = threading.Event()
        self._removed = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def insert(self, timeout: float = 5.0) -> None:
        """Connect to vpcd, which is what putting the card on the reader means to it."""
        self.remove()
        self._removed.clear()
        self.vanished.clear()
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.settimeout(None)
        with self._lock:
            self._sock = sock
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
        self._thread.start()

    def remove(self) -> None:
        """Drop the connection: vpcd's next presence poll finds the slot empty."""
        self._removed.set()
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            _close(sock)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self, sock: socket.socket) -> None:
        current: socket.socket | None = sock
        while current is not None:
            self._serve(current)
            with self._lock:
                if self._sock is current:
                    self._sock = None
            _close(current)
            if self._removed.is_set() or self.vanished.is_set() or not self.stay_on_reader:
                return
            current = self._reconnect()

    def _reconnect(self) -> socket.socket | None:
        while not self._removed.wait(0.05):
            try:
                sock = socket.create_connection((self.host, self.port), timeout=1.0)
            except OSError:
                continue
            sock.settimeout(None)
            with self._lock:
                if self._removed.is_set():
                    _close(sock)
                    return None
                self._sock = sock
            return sock
        return None

    def _serve(self, sock: socket.socket) -> None:
        try:
            while True:
                header = _recv_exact(sock, 2)
                if header is None:
                    return
                (length,) = struct.unpack(">H", header)
                payload = _recv_exact(sock, length)
                if payload is None:
                    return
                if length == 1:
                    if payload[0] == CTRL_ATR:
                        sock.sendall(struct.pack(">H", len(self.atr)) + self.atr)
                    # power on/off and reset take no answer
                    continue
                self.apdus.append(payload)
                answer = self.responder(payload)
                if answer is None:
                    log.info("virtual card vanishes on APDU %s", payload.hex())
                    self.vanished.set()
                    return
                sock.sendall(struct.pack(">H", len(answer)) + answer)
        except OSError:
            return


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
