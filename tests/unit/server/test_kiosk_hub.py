"""The event hub: a thread publishes, asyncio subscribers get what their filter picks."""

import asyncio
import concurrent.futures
import threading
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from protocol import AckResult, TapMode
from server.kiosk import hub as hub_module
from server.kiosk.events import TapEvent
from server.kiosk.hub import EventHub

T = TypeVar("T")


def _run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run in a thread of its own: Playwright's sync API may hold this thread's loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result(timeout=60)


def _kiosk_tap(reader_id: str) -> TapEvent:
    return TapEvent(
        reader_id=reader_id, event_id=uuid.uuid4(), mode=TapMode.KIOSK, result=AckResult.ACCEPTED
    )


def test_events_from_another_thread_reach_the_matching_subscriber() -> None:
    hub = EventHub()
    mine, other = _kiosk_tap("k1"), _kiosk_tap("k2")

    async def run() -> list[TapEvent]:
        with hub.subscribe(lambda e: e.reader_id == "k1") as subscription:
            assert hub.subscribers == 1
            threading.Thread(target=hub.publish, args=([other, mine],)).start()
            return await subscription.next(5.0)

    assert _run(run) == [mine]
    assert hub.subscribers == 0


def test_a_slow_subscriber_loses_its_oldest_events_not_the_publishers_time() -> None:
    hub = EventHub()
    taps = [_kiosk_tap("k1") for _ in range(hub_module.MAX_QUEUED + 5)]

    async def run() -> list[TapEvent]:
        with hub.subscribe(lambda e: True) as subscription:
            hub.publish(taps)  # from the loop's own thread, as call_soon_threadsafe allows
            await asyncio.sleep(0)
            return await subscription.next(1.0)

    got = _run(run)
    assert got == taps[5:]


def test_nothing_arrives_within_the_timeout() -> None:
    hub = EventHub()

    async def run() -> list[TapEvent]:
        with hub.subscribe(lambda e: True) as subscription:
            return await subscription.next(0.05)

    assert _run(run) == []
