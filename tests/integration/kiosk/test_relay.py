"""Tap events between processes over a real Mosquitto: each hub sees each batch exactly once."""

import asyncio
import concurrent.futures
import uuid
from collections.abc import Callable, Coroutine
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


def test_a_batch_reaches_every_process_once(mosquitto: Mosquitto) -> None:
    endpoint = MqttEndpoint.parse(mosquitto.url)
    ingest_hub, web_hub = EventHub(), EventHub()
    ingest = EventRelay(endpoint, ingest_hub)  # `rollcall ingest`
    web = EventRelay(endpoint, web_hub)  # `rollcall serve`
    for relay in (ingest, web):
        relay.start()
        assert relay.wait_ready(10)
    try:
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
            await asyncio.sleep(0.1)  # both subscribed
            await asyncio.to_thread(ingest.publish, outcomes)
            return await here, await there

        here, there = _run(both)
    finally:
        ingest.stop()
        web.stop()
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
    endpoint = MqttEndpoint.parse(mosquitto.url)
    ingest_hub, web_hub = EventHub(), EventHub()
    ingest = EventRelay(endpoint, ingest_hub, listen=False)  # `rollcall ingest`: no screens
    web = EventRelay(endpoint, web_hub)
    for relay in (ingest, web):
        relay.start()
        assert relay.wait_ready(10)
    try:
        from_ingest = [_outcome(TapMode.CHECKIN, AckResult.ACCEPTED, member_id=1, session_id=2)]
        from_web = [_outcome(TapMode.KIOSK, AckResult.ACCEPTED, member_id=3)]

        async def both() -> tuple[list[TapEvent], list[TapEvent]]:
            here = asyncio.create_task(_collect(ingest_hub, 1, timeout=2.0))
            there = asyncio.create_task(_collect(web_hub, 2))
            await asyncio.sleep(0.1)
            await asyncio.to_thread(ingest.publish, from_ingest)
            await asyncio.to_thread(web.publish, from_web)
            return await here, await there

        here, there = _run(both)
    finally:
        ingest.stop()
        web.stop()
    # The ingest's hub has its own batch (given directly), never the web process's.
    assert [e.event_id for e in here] == [from_ingest[0].event_id]
    assert sorted(str(e.event_id) for e in there) == sorted(
        str(o.event_id) for o in from_ingest + from_web
    )
