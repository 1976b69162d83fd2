"""Run a CardSource in a thread and look at what it yields, for the hardware-source tests."""

import queue
import threading
import time

from reader_agent.sources.base import CardPresentation, CardSource


class SourceRunner:
    """Drives `source.presentations()` in a background thread and queues each presentation."""

    def __init__(self, source: CardSource) -> None:
        self.source = source
        self.stop_event = threading.Event()
        self.seen: list[CardPresentation] = []
        self.error: BaseException | None = None
        self._queue: queue.Queue[CardPresentation] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"source-{source.name}", daemon=True)

    def __enter__(self) -> "SourceRunner":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            for presentation in self.source.presentations(self.stop_event):
                self.seen.append(presentation)
                self._queue.put(presentation)
        except BaseException as exc:  # reported by the test, not swallowed
            self.error = exc

    def next(self, timeout: float) -> CardPresentation:
        """The next presentation, or AssertionError when none comes within `timeout` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            self._raise_if_crashed()
            raise AssertionError(f"no card presentation within {timeout} s") from None

    def assert_quiet(self, seconds: float) -> None:
        """Assert that no presentation arrives for `seconds`."""
        try:
            extra = self._queue.get(timeout=seconds)
        except queue.Empty:
            self._raise_if_crashed()
            return
        raise AssertionError(f"unexpected presentation {extra}")

    def stop(self, timeout: float = 5.0) -> float:
        """Set the stop event, close the source, and return how long the thread took to end."""
        started = time.monotonic()
        self.stop_event.set()
        self._thread.join(timeout)
        elapsed = time.monotonic() - started
        self.source.close()
        if self._thread.is_alive():
            raise AssertionError(f"source {self.source.name} ignored stop for {timeout} s")
        self._raise_if_crashed()
        return elapsed

    @property
    def alive(self) -> bool:
        """Whether the source's thread is still running."""
        return self._thread.is_alive()

    def _raise_if_crashed(self) -> None:
        if self.error is not None:
            raise AssertionError(
                f"source {self.source.name} crashed: {self.error!r}"
            ) from self.error
