"""Fixtures for the nfcpy tests: tags emulated over nfcpy's udp driver in a second process."""

import contextlib
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.support.processes import Process

REPO_ROOT = Path(__file__).resolve().parents[3]


def free_udp_port() -> int:
    """A UDP port on loopback that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmulatedTag:
    """Drives a tag_emulator process: bring the tag into the field and take it out."""

    def __init__(self, process: Process, port: int) -> None:
        self.process = process
        self.port = port
        self.device = f"udp:127.0.0.1:{port}"

    def present(self) -> None:
        """Bring the tag into the reader's field."""
        self.process.write("present\n")
        self.process.wait_for(r"^present$", timeout=5)

    def remove(self) -> None:
        """Take the tag out of the field: from now on it answers nothing."""
        before = self.process.count(r"^removed$")
        self.process.write("remove\n")
        self.process.wait_until(lambda: self.process.count(r"^removed$") > before, timeout=5)

    def activations(self) -> int:
        """How many times a reader has selected the tag so far."""
        return self.process.count(r"^activated \d+$")


class TagFactory(Protocol):
    """Starts an emulated tag of a kind (tt2, tt3, tt4a, tt4b) with a UID."""

    def __call__(self, kind: str, uid: str) -> EmulatedTag:
        """Start the emulator process; the tag starts out of the field."""


@pytest.fixture
def emulated_tag(tmp_path: Path) -> Iterator[TagFactory]:
    """Start tag emulator processes; each one is stopped after the test."""
    started: list[Process] = []

    def start(kind: str, uid: str) -> EmulatedTag:
        port = free_udp_port()
        process = Process(
            [
                *(sys.executable, "-m", "tests.integration.nfc.tag_emulator"),
                *("--kind", kind, "--uid", uid, "--port", str(port), "--debug"),
            ],
            env={"PYTHONPATH": str(REPO_ROOT)},
            log_path=tmp_path / f"tag-{kind}-{port}.log",
            stdin=True,
        )
        started.append(process)
        process.wait_for(r"^ready$", timeout=15)
        return EmulatedTag(process, port)

    yield start
    for process in started:
        if process.proc.poll() is None:
            with contextlib.suppress(OSError):
                process.write("quit\n")
                process.close_stdin()
        process.terminate(timeout=5)
        # Process.terminate() leaves the stdout pipe open; close it so no
        # ResourceWarning escapes into the next test under -W error.
        if process.proc.stdout is not None:
            process.proc.stdout.close()
