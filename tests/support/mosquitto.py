"""A real Mosquitto broker on a free port, owned by one test, session or benchmark run."""

import os
import shutil
import signal
import subprocess
from pathlib import Path

from tests.support import ServiceUnavailable
from tests.support.ports import free_port, wait_for_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

# Settings the DESIGN's Reliability section calls for: persistence, no silent
# QoS 1 drops for a slow subscriber (0 = unlimited), NODELAY against Nagle.
# `user root` stops a root-run Mosquitto from dropping to a user that cannot write
# the test's store (it is ignored when the tests do not run as root).
CONFIG = """\
user root
listener {port} 127.0.0.1
allow_anonymous true
{persistence}
max_queued_messages 0
max_inflight_messages 1000
set_tcp_nodelay true
log_dest file {dir}/mosquitto.log
log_type error
log_type warning
"""


PERSISTENCE_ON = "persistence true\npersistence_location {dir}/\nautosave_interval 1"
PERSISTENCE_OFF = "persistence false"


class Mosquitto:
    """A Mosquitto process; stop and start again on the same port with the same store.

    Without `persistence` the broker keeps nothing on disk (the benchmarks: its own
    disk writes are not what they measure), so a restart loses what it held.
    """

    def __init__(self, workdir: Path, persistence: bool = True) -> None:
        if not Path(MOSQUITTO).exists():
            raise ServiceUnavailable(
                "Mosquitto is missing: install it with `apt-get install mosquitto` "
                "(or run `make test`, which installs it)"
            )
        self.host = "127.0.0.1"
        self.port = free_port()
        self.workdir = workdir
        self.config_path = workdir / "mosquitto.conf"
        stored = (PERSISTENCE_ON if persistence else PERSISTENCE_OFF).format(dir=workdir)
        self.config_path.write_text(CONFIG.format(port=self.port, dir=workdir, persistence=stored))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker's mqtt:// URL."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The running broker's process id."""
        if self._proc is None:
            raise RuntimeError("Mosquitto is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            return
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for_port(self.host, self.port)
        except TimeoutError:
            log = (self.workdir / "mosquitto.log").read_text(errors="replace")
            self.stop()
            raise ServiceUnavailable(
                f"Mosquitto did not start on port {self.port}:\n{log}"
            ) from None

    def stop(self, kill: bool = False) -> None:
        """Stop the broker: SIGTERM (saves its store) or SIGKILL (loses what it held in memory)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            self._proc.wait(timeout=10)
        self._proc = None

    def restart(self, kill: bool = False) -> None:
        """Stop and start again on the same port."""
        self.stop(kill=kill)
        self.start()
