"""The `nfcpy` card source: NFC readers driven by nfcpy (USB, serial, or nfcpy's UDP simulator).

The source senses one target type at a time (so `stop` is honoured between
attempts even on the UDP driver, which waits about a second per attempt),
activates the tag it finds, reports its identifier, and then waits until the
tag has left the field before it senses again: one presentation per tap.
A device that fails (unplugged, I/O error) is closed and reopened with growing
pauses.
"""

import errno
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import nfc
import nfc.clf
import nfc.tag

from protocol import CardTech
from reader_agent.errors import CardSourceError
from reader_agent.sources.backoff import Backoff
from reader_agent.sources.base import CardPresentation, CardSource
from reader_agent.sources.options import NfcpyOptions

log = logging.getLogger(__name__)

_TECH_BY_TYPE_LETTER = {"A": CardTech.ISO14443A, "B": CardTech.ISO14443B, "F": CardTech.FELICA}

_OPEN_HINTS = {
    errno.EACCES: "no permission: install deploy/reader/90-rollcall-nfc.rules, re-plug the reader",
    errno.EBUSY: "device busy: another program or the pn533 kernel module holds it "
    "(blacklist pn533_usb, see docs/terminal.md)",
}


class _DeviceFailed(Exception):
    """The frontend stopped working; close it and open it again."""


def tech_for_bitrate_type(brty: str) -> CardTech:
    """Map nfcpy's bitrate-and-type string (106A, 106B, 212F, ...) to the protocol's technology."""
    try:
        return _TECH_BY_TYPE_LETTER[brty[-1:]]
    except KeyError:
        raise ValueError(f"unknown nfcpy target type {brty!r}") from None


class NfcpySource(CardSource):
    """Card presentations from an NFC reader that nfcpy drives."""

    name = "nfcpy"

    def __init__(
        self, options: NfcpyOptions, *, frontend_factory: Callable[[], Any] | None = None
    ) -> None:
        self._options = options
        self._new_frontend = frontend_factory or nfc.ContactlessFrontend
        self._lock = threading.Lock()
        self._clf: Any = None
        self._closed = threading.Event()

    def presentations(self, stop: threading.Event) -> Iterator[CardPresentation]:
        """Yield one CardPresentation per tag brought into the field until `stop` is set."""
        backoff = Backoff(0.5, self._options.retry_max_seconds)
        failing = False
        try:
            while not self._stopping(stop):
                clf = None
                try:
                    clf = self._open()
                    log.info("NFC reader %s %s", clf, "is back" if failing else "opened")
                    failing = False
                    backoff.reset()
                    yield from self._sense_loop(clf, stop)
                except _DeviceFailed as exc:
                    if self._stopping(stop):
                        break
                    # Say it once per outage; the retries that follow go to the debug log.
                    log.log(logging.DEBUG if failing else logging.WARNING, "%s; retrying", exc)
                    failing = True
                except CardSourceError:
                    raise
                except Exception:
                    if self._stopping(stop):
                        break
                    log.exception("unexpected error in the nfcpy source; reopening the reader")
                    failing = True
                self._drop(clf)
                stop.wait(backoff.next_delay())
        finally:
            self._drop(self._clf)

    def close(self) -> None:
        """Close the NFC device; safe to call more than once and from another thread."""
        self._closed.set()
        self._drop(self._clf)

    def _stopping(self, stop: threading.Event) -> bool:
        return stop.is_set() or self._closed.is_set()

    def _open(self) -> Any:
        path = self._options.device
        clf = self._new_frontend()
        try:
            found = clf.open(path)
        except OSError as exc:
            hint = _OPEN_HINTS.get(exc.errno or 0)
            raise _DeviceFailed(
                f"cannot open NFC reader {path!r}: {exc}" + (f" ({hint})" if hint else "")
            ) from exc
        except (ValueError, TypeError) as exc:
            raise CardSourceError(f"nfcpy device path {path!r} is not valid: {exc}") from exc
        if not found:
            raise _DeviceFailed(f"no NFC reader found at {path!r}; is it plugged in?")
        with self._lock:
            if self._closed.is_set():
                clf.close()
                raise _DeviceFailed("source closed")
            self._clf = clf
        return clf

    def _drop(self, clf: Any) -> None:
        with self._lock:
            if clf is None or clf is not self._clf:
                return
            self._clf = None
        try:
            clf.close()
        except Exception:  # closing a dead device may fail in any way; it is gone either way
            log.debug("closing the NFC reader failed", exc_info=True)

    def _sense_loop(self, clf: Any, stop: threading.Event) -> Iterator[CardPresentation]:
        targets = list(self._options.targets)
        interval = self._options.poll_seconds
        while not self._stopping(stop):
            started = time.monotonic()
            for brty in list(targets):
                if self._stopping(stop):
                    return
                found = self._sense(clf, brty, targets)
                if found is None:
                    continue
                tag = self._activate(clf, found)
                if tag is None:
                    # Something answered but is no tag we can read (a phone in peer-to-peer
                    # mode, a tag leaving the field): do not spin on it.
                    stop.wait(interval)
                    continue
                yield self._presentation(clf, found, tag)
                self._wait_for_removal(tag, stop)
                break
            stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def _sense(self, clf: Any, brty: str, targets: list[str]) -> Any:
        try:
            return clf.sense(nfc.clf.RemoteTarget(brty), iterations=1)
        except nfc.clf.UnsupportedTargetError as exc:
            log.warning(
                "NFC reader %s cannot look for %s targets (%s); leaving them out", clf, brty, exc
            )
            targets.remove(brty)
            if not targets:
                raise CardSourceError(
                    f"NFC reader {clf} supports none of the configured targets "
                    f"{self._options.targets}"
                ) from exc
            return None
        except nfc.clf.CommunicationError as exc:
            log.debug("sense %s: %s", brty, exc)
            return None
        except OSError as exc:
            raise _DeviceFailed(f"NFC reader {clf} failed: {exc}") from exc

    def _activate(self, clf: Any, target: Any) -> Any:
        try:
            tag = nfc.tag.activate(clf, target)
        except OSError as exc:
            raise _DeviceFailed(f"NFC reader {clf} failed: {exc}") from exc
        except Exception as exc:
            # nfcpy's activation code trips over half-answered exchanges (a tag
            # snatched away mid-activation) with assorted errors.
            log.debug("activating %s failed: %r", target, exc)
            return None
        if tag is None:
            log.debug("found %s but could not activate it", target)
        return tag

    def _presentation(self, clf: Any, target: Any, tag: Any) -> CardPresentation:
        uid = bytes(tag.identifier).hex().upper()
        tech = tech_for_bitrate_type(str(target.brty))
        log.debug("read %s tag %s (%s) on %s", tech, uid, tag.type, clf)
        return CardPresentation(tech=tech, uid=uid, source=self.name, reader_name=str(clf))

    def _wait_for_removal(self, tag: Any, stop: threading.Event) -> None:
        while not self._stopping(stop):
            try:
                present = bool(tag.is_present)
            except OSError as exc:
                raise _DeviceFailed(f"NFC reader failed: {exc}") from exc
            except Exception as exc:
                log.debug("presence check failed: %r; taking the tag as gone", exc)
                present = False
            if not present:
                log.debug("tag %s left the field", bytes(tag.identifier).hex().upper())
                return
            stop.wait(self._options.poll_seconds)
