"""A pcscd of the tests' own, with the vsmartcard vpcd driver as its only configured reader.

pcscd's socket path is fixed at /run/pcscd, so one pcscd serves the whole machine:
these tests stop any pcscd already running, hold a lock file so parallel test
runs wait for each other, and give the system pcscd back when they are done.
"""

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from smartcard import scard

RUN_DIR = Path("/run/pcscd")
PID_FILE = RUN_DIR / "pcscd.pid"
SOCKET = RUN_DIR / "pcscd.comm"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
VPCD_PORT = 0x8C7B
READER_NAME = "Virtual PCD 00 00"  # vpcd's first slot, the one on VPCD_PORT
# A machine-wide lock on purpose: every test run on this machine shares /run/pcscd.
LOCK_FILE = Path("/tmp/rollcall-pcscd-tests.lock")

INSTALL_HINT = "install it with: apt-get install pcscd libpcsclite-dev vsmartcard-vpcd"


class PcscdUnavailable(Exception):
    """The PC/SC test stack is missing or cannot start; the text says what to install or fix."""


def check_stack() -> None:
    """Raise PcscdUnavailable naming what is missing from the PC/SC test stack."""
    if shutil.which("pcscd") is None:
        raise PcscdUnavailable(f"pcscd is not installed; {INSTALL_HINT}")
    if not VPCD_DRIVER.exists():
        raise PcscdUnavailable(
            f"the vsmartcard vpcd driver ({VPCD_DRIVER}) is not installed; {INSTALL_HINT}"
        )
    if os.geteuid() != 0:
        raise PcscdUnavailable(
            "the PC/SC tests start their own pcscd, which must create /run/pcscd: run them as root"
        )


class _MachineLock:
    """LOCK_FILE, locked once per process however deeply its holders nest.

    flock locks conflict between two opens of the file even in one process, so a
    test run whose PC/SC tests hold the lock for their session pcscd would wait
    forever on itself when an end-to-end test takes the lock for its own pcscd.
    """

    def __init__(self) -> None:
        self._guard = threading.RLock()
        self._depth = 0
        self._handle: IO[str] | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Lock the file unless this process already holds it; unlock when the last leaves."""
        with self._guard:
            if self._depth == 0:
                handle = LOCK_FILE.open("w")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                except BaseException:
                    handle.close()
                    raise
                self._handle = handle
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._handle is not None:
                    fcntl.flock(self._handle, fcntl.LOCK_UN)
                    self._handle.close()
                    self._handle = None


_machine_lock = _MachineLock()


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """Hold the machine-wide lock that keeps two test runs from sharing /run/pcscd.

    Re-entrant within one process: a holder nested inside another goes straight in.
    """
    with _machine_lock.held():
        yield


def write_vpcd_config(directory: Path) -> Path:
    """Write a reader.conf.d holding only vpcd, so no other configured reader interferes."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vpcd").write_text(
        'FRIENDLYNAME "Virtual PCD"\n'
        f"DEVICENAME   /dev/null:0x{VPCD_PORT:04X}\n"
        f"LIBPATH      {VPCD_DRIVER}\n"
        f"CHANNELID    0x{VPCD_PORT:04X}\n"
    )
    return directory


class Pcscd:
    """Start, stop and restart a foreground pcscd with a given reader.conf.d."""

    def __init__(self, config_dir: Path, log_path: Path) -> None:
        self.config_dir = config_dir
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopped_system_units: list[str] = []

    def start(self, config_dir: Path | None = None, expect_reader: bool = True) -> None:
        """Start pcscd (optionally with another reader.conf.d) and wait until it answers."""
        if self.running:
            raise RuntimeError("pcscd already running")
        self._take_over_machine()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                ["pcscd", "--foreground", "--info", "-c", str(config_dir or self.config_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(expect_reader)

    def stop(self) -> None:
        """SIGTERM pcscd and wait until its socket is gone."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        _wait_until(lambda: not SOCKET.exists(), 5, "pcscd to remove its socket")

    def restart(self) -> None:
        """Stop and start again with the same configuration."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        """Whether the pcscd this object started is alive."""
        return self._proc is not None and self._proc.poll() is None

    def give_back(self) -> None:
        """Start again the system units stopped to make room for this pcscd."""
        for unit in self._stopped_system_units:
            subprocess.run(["systemctl", "start", unit], check=False, capture_output=True)
        self._stopped_system_units.clear()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines pcscd logged, for failure messages."""
        if not self.log_path.exists():
            return "(no pcscd log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _take_over_machine(self) -> None:
        # A socket-activated system pcscd would answer on /run/pcscd instead of ours.
        if shutil.which("systemctl") and Path("/run/systemd/system").exists():
            for unit in ("pcscd.socket", "pcscd.service"):
                active = subprocess.run(
                    ["systemctl", "is-active", "--quiet", unit], check=False
                ).returncode
                if active == 0:
                    subprocess.run(["systemctl", "stop", unit], check=True, capture_output=True)
                    if unit.endswith(".socket"):
                        self._stopped_system_units.append(unit)
        pid = _running_pcscd_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            _wait_until(lambda: not _alive(pid), 10, f"the running pcscd (pid {pid}) to stop")
        for leftover in (SOCKET, PID_FILE):
            leftover.unlink(missing_ok=True)

    def _wait_ready(self, expect_reader: bool) -> None:
        deadline = time.monotonic() + 15
        last = "socket not there yet"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise PcscdUnavailable(
                    f"pcscd exited with {self._proc.returncode}:\n{self.log_tail()}"
                )
            if SOCKET.exists():
                hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
                if hresult == scard.SCARD_S_SUCCESS:
                    try:
                        hresult, readers = scard.SCardListReaders(context, [])
                    finally:
                        scard.SCardReleaseContext(context)
                    if not expect_reader:
                        return
                    if READER_NAME in readers:
                        return
                    last = f"readers so far: {readers} ({scard.SCardGetErrorMessage(hresult)})"
                else:
                    last = scard.SCardGetErrorMessage(hresult)
            time.sleep(0.05)
        raise PcscdUnavailable(f"pcscd did not get ready ({last}):\n{self.log_tail()}")


def wait_reader_empty(timeout: float = 5.0) -> None:
    """Wait until pcscd has seen the vpcd slot empty.

    pcscd polls vpcd every 400 ms; a card put on within that time after another was
    taken off looks to pcscd like the first card never left, so tests wait for this.
    """
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise PcscdUnavailable(f"pcscd not answering: {scard.SCardGetErrorMessage(hresult)}")
    try:
        state = scard.SCARD_STATE_UNAWARE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hresult, states = scard.SCardGetStatusChange(context, 200, [(READER_NAME, state)])
            if hresult == scard.SCARD_S_SUCCESS:
                state = states[0][1] & ~scard.SCARD_STATE_CHANGED
                if state & scard.SCARD_STATE_EMPTY:
                    return
        raise PcscdUnavailable(f"{READER_NAME} still shows a card after {timeout} s")
    finally:
        scard.SCardReleaseContext(context)


def _running_pcscd_pid() -> int | None:
    try:
        text = PID_FILE.read_text(errors="replace").strip("\x00\n ")
    except FileNotFoundError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    # A pcscd this very process started and another holder stopped stays a zombie until
    # its Popen reaps it; it has let go of /run/pcscd all the same.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise PcscdUnavailable(f"timed out after {timeout} s waiting for {what}")
