"""An NFC tag emulated over nfcpy's own `udp` driver, run as a second process by the tests.

    python -m tests.integration.nfc.tag_emulator --kind tt2 --uid 04A1B2C3D4E5F6 --port 54321

The tag listens as an nfcpy target (the udp driver's listen side) on the port the
reader under test senses. Commands on stdin: `present` brings the tag into the
field, `remove` takes it out (it stops answering, exactly like a tag carried
away), `quit` ends the process. Lines on stdout: `ready`, `present`, `removed`,
`activated <n>` each time a reader selects the tag.

Kinds: `tt2` (NFC-A, Type 2 Tag / NTAG213 with a 4, 7 or 10-byte UID), `tt3`
(NFC-F FeliCa; nfcpy's own Type3TagEmulation answers the commands), `tt4a` and
`tt4b` (ISO-DEP over NFC-A / NFC-B).

After the reader turns its field off and on again (nfcpy's udp reader sends
RFOFF whenever it re-senses, which nfcpy's NXP Type 2 activation does on
purpose) a real tag answers the very next poll. nfcpy's public `listen()` closes
and re-binds the UDP socket each time and drops that poll, so re-activation uses
the udp device's `_listen_tta` / `_listen_ttf` on the socket already bound.
"""

import argparse
import logging
import sys
import threading
import time
from typing import Any

import nfc
import nfc.clf
import nfc.tag.tt3

log = logging.getLogger("tag_emulator")

NTAG213_VERSION = bytes.fromhex("0004040201000F03")
SW_NOT_FOUND = bytes.fromhex("6A82")
SW_INS_NOT_SUPPORTED = bytes.fromhex("6D00")
FELICA_PMM = bytes.fromhex("012022FF27674EFF")  # IC 0x20 (FeliCa Standard), slow MRT byte
FELICA_SYSTEM = bytes.fromhex("0003")


def say(line: str) -> None:
    """Report an event to the test on stdout."""
    print(line, flush=True)


class Emulation:
    """What one kind of tag looks like to a reader and how it answers."""

    relisten_on_same_socket = True

    def __init__(self, uid: bytes) -> None:
        self.uid = uid

    def target(self) -> Any:
        """The nfcpy LocalTarget the tag listens as."""
        raise NotImplementedError

    def first_command(self, activated: Any) -> bytes | None:
        """The command that completed activation (the udp driver hands it over)."""
        raise NotImplementedError

    def respond(self, command: bytes) -> bytes | None:
        """The tag's answer to a command; None keeps silent, as a tag does on errors."""
        raise NotImplementedError

    def relisten(self, device: Any, target: Any, deadline: float) -> Any:
        """Wait for the next activation on the socket already bound."""
        return device._listen_tta(target, deadline)


def _sens_res_for(uid: bytes) -> bytes:
    # SENS_RES (ATQA) bits 8-7 give the UID size: 00 single, 01 double, 10 triple.
    size_bits = {4: 0x00, 7: 0x40, 10: 0x80}[len(uid)]
    return bytes([size_bits | 0x04, 0x00])


class Type2Tag(Emulation):
    """An NTAG213: 45 pages of 4 bytes, answers READ and GET_VERSION."""

    def __init__(self, uid: bytes) -> None:
        super().__init__(uid)
        memory = bytearray(45 * 4)
        memory[0:3] = uid[0:3]
        memory[4 : 4 + len(uid[3:7])] = uid[3:7]
        memory[12:16] = bytes.fromhex("E1101200")  # capability container
        memory[16:20] = bytes.fromhex("0300FE00")  # empty NDEF message, terminator
        self.memory = bytes(memory)

    def target(self) -> Any:
        """NFC-A with SEL_RES 00: a Type 2 Tag."""
        return nfc.clf.LocalTarget(
            "106A", sens_res=_sens_res_for(self.uid), sdd_res=self.uid, sel_res=b"\x00"
        )

    def first_command(self, activated: Any) -> bytes | None:
        """Type 2 activation ends with the reader's first tag command."""
        return bytes(activated.tt2_cmd) if activated.tt2_cmd else None

    def respond(self, command: bytes) -> bytes | None:
        """READ (30) returns 16 bytes from the page; GET_VERSION (60) the NTAG213 version."""
        if len(command) == 2 and command[0] == 0x30:
            start = command[1] * 4 % len(self.memory)
            doubled = self.memory + self.memory
            return doubled[start : start + 16]
        if command == b"\x60":
            return NTAG213_VERSION
        return None  # 1A (Ultralight C AUTHENTICATE) and anything else: a mute NAK


class IsoDep(Emulation):
    """ISO-DEP (ISO 14443-4) block handling shared by Type 4A and 4B; no applications."""

    def respond(self, command: bytes) -> bytes | None:
        """Answer I-blocks with 6A82 / 6D00, R(NAK) presence checks with R(ACK)."""
        pcb = command[0]
        if pcb & 0xE2 == 0x02:  # I-block
            apdu = command[1:]
            sw = SW_NOT_FOUND if apdu[1:2] == b"\xa4" else SW_INS_NOT_SUPPORTED
            return bytes([pcb & 0x03 | 0x02]) + sw
        if pcb & 0xF6 == 0xB2:  # R(NAK): nfcpy's presence check
            return bytes([0xA2 | (pcb & 0x01)])
        if pcb & 0xF7 == 0xC2:  # S(DESELECT)
            return bytes([pcb])
        return None


class Type4ATag(IsoDep):
    """A Type 4A tag: NFC-A with SEL_RES 20 (ISO-DEP), answering RATS with an ATS."""

    # TL=5, T0=78 (TA, TB, TC follow; FSCI 8: 256 bytes), TA1, TB1 (FWI 8: ~77 ms), TC1.
    ATS = bytes.fromhex("0578808000")

    def target(self) -> Any:
        """NFC-A with SEL_RES 20: ISO-DEP compliant."""
        return nfc.clf.LocalTarget(
            "106A", sens_res=_sens_res_for(self.uid), sdd_res=self.uid, sel_res=b"\x20"
        )

    def first_command(self, activated: Any) -> bytes | None:
        """The udp driver hands over RATS as `tt4_cmd`."""
        return bytes(activated.tt4_cmd) if activated.tt4_cmd else None

    def respond(self, command: bytes) -> bytes | None:
        """RATS gets the ATS; everything after is ISO-DEP blocks."""
        if command[:1] == b"\xe0":
            return self.ATS
        return super().respond(command)


class Type4BTag(IsoDep):
    """A Type 4B tag: NFC-B whose PUPI is the UID, answering ATTRIB."""

    relisten_on_same_socket = False  # the udp driver's listen_ttb has no re-entry point

    def target(self) -> Any:
        """SENSB_RES: 50, PUPI, application data, protocol info (FSCI 8, ISO-DEP, FWI 8)."""
        sensb_res = b"\x50" + self.uid + bytes(4) + bytes.fromhex("008181")
        return nfc.clf.LocalTarget("106B", sensb_res=sensb_res)

    def first_command(self, activated: Any) -> bytes | None:
        """The udp driver hands over ATTRIB as `tt4_cmd`."""
        return bytes(activated.tt4_cmd) if activated.tt4_cmd else None

    def respond(self, command: bytes) -> bytes | None:
        """ATTRIB (1D + PUPI ...) gets MBLI/CID 00; everything after is ISO-DEP blocks."""
        if command[:1] == b"\x1d" and command[1:5] == self.uid:
            return b"\x00"
        return super().respond(command)


class Type3Tag(Emulation):
    """A FeliCa card: nfcpy's own Type3TagEmulation processes every command."""

    def __init__(self, uid: bytes) -> None:
        super().__init__(uid)
        self.clf: Any = None  # set once the frontend is open
        self.emulation: Any = None

    def target(self) -> Any:
        """NFC-F at 212 kbps with the IDm as the UID."""
        sensf_res = b"\x01" + self.uid + FELICA_PMM + FELICA_SYSTEM
        return nfc.clf.LocalTarget("212F", sensf_res=sensf_res)

    def first_command(self, activated: Any) -> bytes | None:
        """Keep nfcpy's emulation for this activation; its first command comes with it."""
        self.emulation = nfc.tag.tt3.Type3TagEmulation(self.clf, activated)
        return bytes(self.emulation.cmd)

    def respond(self, command: bytes) -> bytes | None:
        """Whatever nfcpy's Type 3 tag emulation answers."""
        answer = self.emulation.process_command(bytearray(command))
        return bytes(answer) if answer is not None else None

    def relisten(self, device: Any, target: Any, deadline: float) -> Any:
        """NFC-F activation on the bound socket."""
        return device._listen_ttf(target, deadline)


KINDS: dict[str, type[Emulation]] = {
    "tt2": Type2Tag,
    "tt3": Type3Tag,
    "tt4a": Type4ATag,
    "tt4b": Type4BTag,
}


class Field:
    """Whether the tag is in the reader's field, switched by the test over stdin."""

    def __init__(self) -> None:
        self.present = threading.Event()
        self.quit = threading.Event()

    def read_commands(self) -> None:
        """Follow `present` / `remove` / `quit` lines until stdin closes."""
        for line in sys.stdin:
            command = line.strip()
            if command == "present":
                self.present.set()
                say("present")
            elif command == "remove":
                self.present.clear()
                say("removed")
            elif command == "quit":
                break
        self.present.clear()
        self.quit.set()


def serve(clf: Any, emulation: Emulation, field: Field) -> None:
    """Answer the reader while the tag is present; stay silent and unbound while it is not."""
    device = clf.device
    target = emulation.target()
    bound = False
    activations = 0
    while not field.quit.is_set():
        if not field.present.is_set():
            if bound:
                device.mute()  # close the socket: nothing answers any more
                bound = False
            field.present.wait(0.1)
            continue
        if not bound or not emulation.relisten_on_same_socket:
            activated = clf.listen(target, 0.25)  # binds the port, then listens
            bound = device.socket is not None
        else:
            activated = emulation.relisten(device, target, time.time() + 0.25)
            clf.target = activated
        if activated is None:
            continue
        activations += 1
        say(f"activated {activations}")
        command = emulation.first_command(activated)
        answer = emulation.respond(command) if command else None
        while field.present.is_set():
            try:
                command = clf.exchange(answer, 0.1)
            except nfc.clf.BrokenLinkError:
                break  # RFOFF: the reader switched its field off; wait to be selected again
            except nfc.clf.TimeoutError:
                answer = None
                continue
            except nfc.clf.CommunicationError:
                answer = None
                continue
            if command in (b"\x26", b"\x52"):
                break  # a new poll without RFOFF: go back to anticollision
            answer = emulation.respond(bytes(command)) if command else None


def main() -> None:
    """Parse arguments, open the udp frontend and serve until told to quit."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kind", choices=sorted(KINDS), required=True)
    parser.add_argument("--uid", required=True, help="UID / IDm / PUPI in hex")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--present", action="store_true", help="start in the field")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(relativeCreated)7.0f %(name)s %(message)s",
        stream=sys.stderr,
    )
    emulation = KINDS[args.kind](bytes.fromhex(args.uid))
    clf = nfc.ContactlessFrontend(f"udp:127.0.0.1:{args.port}")
    if isinstance(emulation, Type3Tag):
        emulation.clf = clf
    field = Field()
    if args.present:
        field.present.set()
    threading.Thread(target=field.read_commands, daemon=True).start()
    say("ready")
    try:
        serve(clf, emulation, field)
    finally:
        clf.close()


if __name__ == "__main__":
    main()
