"""Tap events between processes over a real Mosquitto: each hub sees each batch exactly once."""

import asyncio
import concurrent.futures
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest

from protocol import AckResult, TapMode
from server.domain.display import DisplayText
from server.ingest.endpoint import MqttEndpoint
from server.kiosk.events import TapEvent
from server.kiosk.hub import EventHub
from server.kiosk.relay import EventRelay
from server.services.taps import Outcome
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration
T = TypeVar("T")


def _run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run in a thread of its own: Playwright's sync API may hold this thread's loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result(timeout=60)


def _outcome(mode: TapMode, result: AckResult, **ids: int) -> Outcome:
    return Outcome(uuid.uuid4(), "kiosk-1", result, 0, DisplayText("t"), mode=mode, **ids)


async def _collect(hub: EventHub, expected: int, timeout: float = 10.0) -> list[TapEvent]:
    with hub.subscribe(lambda e: True) as subscription:
        got: list[TapEvent] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(got) < expected and loop.time() < deadline:
            got += await subscription.next(0.2)
        # Anything extra (a batch seen twice) would arrive now.
        got += await subscription.next(0.5)
        return got


async def _subscribed(*hubs: EventHub, timeout: float = 5.0) -> None:
    """Until each hub has a stream listening (the _collect tasks started)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(hub.subscribers == 0 for hub in hubs):
        if loop.time() > deadline:
            raise TimeoutError("the collecting streams never subscribed")
        await asyncio.sleep(0.005)


@contextmanager
def _relays(
    mosquitto: Mosquitto, *, ingest_listens: bool = True
) -> Iterator[tuple[EventRelay, EventHub, EventRelay, EventHub]]:
    """An ingest's relay and a web process's relay on one broker, both ready."""
    endpoint = MqttEndpoint.parse(mosquitto.url)
    ingest_hub, web_hub = EventHub(), EventHub()
    ingest = EventRelay(endpoint, ingest_hub, listen=ingest_listens)  # `rollcall ingest`
    web = EventRelay(endpoint, web_hub)  # `rollcall serve`
    try:
        for relay in (ingest, web):
            relay.start()
            assert relay.wait_ready(10)
        yield ingest, ingest_hub, web, web_hub
    finally:
        ingest.stop()
        web.stop()


def test_a_batch_reaches_every_process_once(mosquitto: Mosquitto) -> None:
    with _relays(mosquitto) as (ingest, ingest_hub, _web, web_hub):
        outcomes = [
            _outcome(TapMode.KIOSK, AckResult.ACCEPTED, member_id=7),
            _outcome(TapMode.KIOSK, AckResult.UNKNOWN_CARD),
            _outcome(TapMode.CHECKIN, AckResult.ACCEPTED, member_id=8, session_id=3),
            # Not for any screen: resent taps, an enrolment.
            _outcome(TapMode.CHECKIN, AckResult.DUPLICATE, member_id=8, session_id=3),
            _outcome(TapMode.KIOSK, AckResult.DUPLICATE, member_id=7),
            _outcome(TapMode.ENROLL, AckResult.UNKNOWN_CARD),
        ]

        async def both() -> tuple[list[TapEvent], list[TapEvent]]:
            here = asyncio.create_task(_collect(ingest_hub, 3))
            there = asyncio.create_task(_collect(web_hub, 3))
            await _subscribed(ingest_hub, web_hub)
            await asyncio.to_thread(ingest.publish, outcomes)
            return await here, await there

        here, there = _run(both)
    wanted = [str(o.event_id) for o in outcomes[:3]]
    assert [str(e.event_id) for e in here] == wanted
    assert [str(e.event_id) for e in there] == wanted
    assert [(e.is_kiosk, e.is_arrival) for e in there] == [
        (True, False),
        (True, False),
        (False, True),
    ]
    assert there[0].member_id == 7


def test_a_relay_without_screens_publishes_and_hears_nothing(mosquitto: Mosquitto) -> None:
    # `rollcall ingest` without screens: its relay publishes and does not listen.
    with _relays(mosquitto, ingest_listens=False) as (ingest, ingest_hub, web, web_hub):
        from_ingest = [_outcome(TapMode.CHECKIN, AckResult.ACCEPTED, member_id=1, session_id=2)]
        from_web = [_outcome(TapMode.KIOSK, AckResult.ACCEPTED, member_id=3)]

        async def both() -> tuple[list[TapEvent], list[TapEvent]]:
            here = asyncio.create_task(_collect(ingest_hub, 1, timeout=2.0))
            there = asyncio.create_task(_collect(web_hub, 2))
            await _subscribed(ingest_hub, web_hub)
            await asyncio.to_thread(ingest.publish, from_ingest)
            await asyncio.to_thread(web.publish, from_web)
            return await here, await there

        here, there = _run(both)
    # The ingest's hub has its own batch (given directly), never the web process's.
    assert [e.event_id for e in here] == [from_ingest[0].event_id]
    assert sorted(str(e.event_id) for e in there) == sorted(
        str(o.event_id) for o in from_ingest + from_web
    )
