"""Terminal diagnostics: read one card and show it; list the readers PC/SC and nfcpy can see.

`rollcall-reader test-card` and `rollcall-reader list-readers` call these. The
hardware stacks are imported only when used, so the module loads on a
simulated-only install too.
"""

import errno
import sys
import threading
from typing import Any, Protocol, TextIO

from reader_agent.errors import CardSourceError
from reader_agent.sources.atr import classify_atr
from reader_agent.sources.base import CardPresentation, CardSource
from reader_agent.sources.options import NfcpyOptions, PcscOptions

EXIT_OK = 0
EXIT_NO_CARD = 1  # test-card: nothing read in time; list-readers: no reader found
EXIT_UNUSABLE = 2  # the configured source cannot be used at all

PCSCD_HINT = "install and start it: apt-get install pcscd && systemctl enable --now pcscd.socket"


class SourceSettings(Protocol):
    """The part of the reader settings the diagnostics need."""

    @property
    def source(self) -> str:
        """Card source name: simulated, pcsc or nfcpy."""

    @property
    def pcsc(self) -> PcscOptions:
        """Options of the pcsc source."""

    @property
    def nfcpy(self) -> NfcpyOptions:
        """Options of the nfcpy source."""


def test_card(
    settings: SourceSettings,
    *,
    timeout: float = 30.0,  # noqa: PT028 - not a pytest test: the CLI's `test-card`
    out: TextIO | None = None,  # noqa: PT028
) -> int:
    """Wait for one card on the configured source and print what it says; return an exit code."""
    stream = out or sys.stdout
    source_name = str(settings.source)
    try:
        source = _hardware_source(settings)
    except CardSourceError as exc:
        print(f"error: {exc}", file=stream)
        return EXIT_UNUSABLE
    stop = threading.Event()
    timer = threading.Timer(timeout, stop.set)
    print(f"waiting up to {timeout:g} s for a card on the {source_name} source ...", file=stream)
    timer.start()
    try:
        for presentation in source.presentations(stop):
            _print_presentation(presentation, stream)
            return EXIT_OK
    except CardSourceError as exc:
        print(f"error: {exc}", file=stream)
        return EXIT_UNUSABLE
    finally:
        timer.cancel()
        stop.set()
        source.close()
    print(f"no card read within {timeout:g} s", file=stream)
    return EXIT_NO_CARD


def list_readers(
    settings: SourceSettings | None = None, *, search_tty: bool = False, out: TextIO | None = None
) -> int:
    """Print the readers pcscd and nfcpy can see; exit code 0 if any reader was found."""
    stream = out or sys.stdout
    found = _list_pcsc(stream)
    found += _list_nfcpy(settings.nfcpy if settings else None, search_tty, stream)
    if not found:
        print("no card reader found", file=stream)
        return EXIT_NO_CARD
    return EXIT_OK


def _hardware_source(settings: SourceSettings) -> CardSource:
    name = str(settings.source)
    if name == "pcsc":
        from reader_agent.sources.pcsc import PcscSource

        return PcscSource(settings.pcsc)
    if name == "nfcpy":
        from reader_agent.sources.nfc import NfcpySource

        return NfcpySource(settings.nfcpy)
    raise CardSourceError(
        f"source {name!r} has no card to read; set source = 'pcsc' or 'nfcpy' in reader.toml"
    )


def _print_presentation(presentation: CardPresentation, stream: TextIO) -> None:
    print(f"source:     {presentation.source}", file=stream)
    print(f"reader:     {presentation.reader_name}", file=stream)
    print(f"technology: {presentation.tech.value}", file=stream)
    print(f"uid:        {presentation.uid}", file=stream)
    if presentation.atr:
        description = classify_atr(bytes.fromhex(presentation.atr)).description
        print(f"atr:        {presentation.atr} ({description})", file=stream)
    else:
        print("atr:        (none: nfcpy talks to tags directly)", file=stream)
    if presentation.auth is not None:
        print(f"auth:       challenge {presentation.auth.challenge}", file=stream)


def _list_pcsc(stream: TextIO) -> int:
    print("PC/SC readers (pcscd):", file=stream)
    try:
        from smartcard import scard
    except ImportError:
        print("  pyscard is not installed (pip install 'rollcall[reader]')", file=stream)
        return 0
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        message = scard.SCardGetErrorMessage(hresult)
        print(f"  pcscd is not running ({message}); {PCSCD_HINT}", file=stream)
        return 0
    try:
        hresult, readers = scard.SCardListReaders(context, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE or not readers:
            print("  none (is the reader plugged in? `lsusb` should list it)", file=stream)
            return 0
        if hresult != scard.SCARD_S_SUCCESS:
            print(f"  cannot list readers: {scard.SCardGetErrorMessage(hresult)}", file=stream)
            return 0
        for reader in readers:
            print(f"  {reader}: {_pcsc_slot_state(scard, context, reader)}", file=stream)
        return len(readers)
    finally:
        scard.SCardReleaseContext(context)


def _pcsc_slot_state(scard: Any, context: Any, reader: str) -> str:
    hresult, states = scard.SCardGetStatusChange(context, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
    if hresult != scard.SCARD_S_SUCCESS:
        return f"state unknown ({scard.SCardGetErrorMessage(hresult)})"
    _name, event, atr = states[0]
    if event & scard.SCARD_STATE_MUTE:
        return "card present but not answering"
    if event & scard.SCARD_STATE_PRESENT:
        atr_bytes = bytes(atr)
        info = classify_atr(atr_bytes)
        return f"card present, ATR {atr_bytes.hex().upper()} ({info.description})"
    if event & scard.SCARD_STATE_EMPTY:
        return "no card"
    return f"state 0x{event:X}"


def _list_nfcpy(options: NfcpyOptions | None, search_tty: bool, stream: TextIO) -> int:
    print("nfcpy devices:", file=stream)
    try:
        import nfc
        import nfc.clf.device
        import nfc.clf.transport
    except ImportError:
        print("  nfcpy is not installed (pip install 'rollcall[reader]')", file=stream)
        return 0
    paths: list[str] = []
    try:
        for vid, pid, bus, dev in nfc.clf.transport.USB.find("usb"):
            if (vid, pid) in nfc.clf.device.usb_device_map:
                paths.append(f"usb:{bus:03d}:{dev:03d}")
    except Exception as exc:  # libusb missing or no USB bus: say so, keep going
        print(f"  cannot search USB: {exc}", file=stream)
    if search_tty:
        # Probing sends bytes to every serial port; only on request, as nfcpy itself does.
        ttys, _driver, _globbed = nfc.clf.transport.TTY.find("tty")
        paths.extend(f"tty:{name.removeprefix('/dev/tty')}" for name in ttys)
    if options is not None and options.device.startswith(("tty:", "udp:")):
        paths.append(options.device)
    found = 0
    for path in paths:
        clf = nfc.ContactlessFrontend()
        try:
            if clf.open(path):
                print(f"  {path}: {clf}", file=stream)
                found += 1
            else:
                print(f"  {path}: no supported reader answered", file=stream)
        except OSError as exc:
            print(f"  {path}: {_nfc_open_problem(exc)}", file=stream)
        finally:
            clf.close()
    if not paths:
        print("  none on USB" + ("" if search_tty else " (serial ports not probed)"), file=stream)
    return found


def _nfc_open_problem(exc: OSError) -> str:
    if exc.errno == errno.EACCES:
        return "found, but access denied: install deploy/reader/90-rollcall-nfc.rules"
    if exc.errno == errno.EBUSY:
        return (
            "found, but busy: the pn533 kernel module or pcscd holds it "
            "(blacklist pn533_usb, or use source = 'pcsc')"
        )
    return f"cannot open: {exc}"


# The name starts with "test_": keep pytest from collecting it where a test imports it.
test_card.__test__ = False  # type: ignore[attr-defined]
