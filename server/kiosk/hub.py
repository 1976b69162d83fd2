"""The in-process event hub: the ingest thread publishes, each open page stream subscribes.

Publishing is thread-safe and never blocks: events are handed to each
subscriber's asyncio loop with `call_soon_threadsafe`. A subscriber that falls
behind by more than its queue's bound loses its oldest events, never the
publisher's time; a screen recomputes its figures from the database anyway.
"""

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from server.kiosk.events import TapEvent

EventFilter = Callable[[TapEvent], bool]
MAX_QUEUED = 1000


class Subscription:
    """One page stream's view of the hub; use as a context manager."""

    def __init__(self, hub: "EventHub", accept: EventFilter, loop: asyncio.AbstractEventLoop):
        self._hub = hub
        self._accept = accept
        self._loop = loop
        self._queue: asyncio.Queue[TapEvent] = asyncio.Queue(MAX_QUEUED)

    def offer(self, events: Sequence[TapEvent]) -> None:
        """Called from any thread: pass on the events this subscriber wants."""
        wanted = [e for e in events if self._accept(e)]
        if wanted:
            self._loop.call_soon_threadsafe(self._put, wanted)

    def _put(self, events: list[TapEvent]) -> None:
        for event in events:
            if self._queue.full():
                self._queue.get_nowait()  # the oldest goes; see the module docstring
            self._queue.put_nowait(event)

    async def next(self, timeout: float) -> list[TapEvent]:
        """Wait up to `timeout` seconds for events; return them all ([] on timeout)."""
        try:
            first = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return []
        events = [first]
        while not self._queue.empty():
            events.append(self._queue.get_nowait())
        return events

    def close(self) -> None:
        """Stop receiving events."""
        self._hub.unsubscribe(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventHub:
    """Fans committed tap events out to the page streams of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []

    def subscribe(self, accept: EventFilter) -> Subscription:
        """Subscribe the running event loop to the events `accept` picks."""
        subscription = Subscription(self, accept, asyncio.get_running_loop())
        with self._lock:
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscriber; safe twice."""
        with self._lock, contextlib.suppress(ValueError):
            self._subscribers.remove(subscription)

    @property
    def subscribers(self) -> int:
        """How many streams are listening."""
        with self._lock:
            return len(self._subscribers)

    def publish(self, events: Sequence[TapEvent]) -> None:
        """Hand events to every subscriber; from any thread, never blocking."""
        if not events:
            return
        with self._lock:
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            try:
                subscription.offer(events)
            except RuntimeError:  # its event loop has closed
                self.unsubscribe(subscription)
