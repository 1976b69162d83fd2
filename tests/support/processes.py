"""Child processes for end-to-end tests: start, read their output live, kill."""

import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class Process:
    """A child process whose stdout lines are collected as they arrive."""

    def __init__(
        self,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        stdin: bool = False,
    ) -> None:
        self.args = list(args)
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        self._log = log_path.open("ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            self.args,
            env=full_env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            self._new.put(line)

    def write(self, text: str) -> None:
        """Write text to the child's stdin and flush it."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        """Signal end of input."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Return the first line (seen so far or arriving) matching `pattern`."""
        regex = re.compile(pattern)
        for line in list(self.lines):
            if match := regex.search(line):
                return match
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._new.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self._new.empty():
                    break
                continue
            if match := regex.search(line):
                return match
        raise TimeoutError(
            f"no line matching {pattern!r} from {self.args[:3]} within {timeout} s "
            f"(exit code {self.proc.poll()}); last lines: {self.lines[-10:]}"
        )

    def count(self, pattern: str) -> int:
        """How many lines so far match `pattern`."""
        regex = re.compile(pattern)
        return sum(1 for line in self.lines if regex.search(line))

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Poll `predicate` until true, or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise TimeoutError(f"condition not met within {timeout} s; last lines: {self.lines[-10:]}")

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit by itself and return its exit code."""
        code = self.proc.wait(timeout=timeout)
        self._release()
        return code

    def pause(self) -> None:
        """SIGSTOP the process group: it holds its sockets but does nothing."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the process group after pause()."""
        os.killpg(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the process group: no clean shutdown, as in a power cut."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._release()

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._release()
        return self.proc.returncode

    def _release(self) -> None:
        self._reader.join(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        if not isinstance(self._log, int) and not self._log.closed:
            self._log.close()
