"""The live check-in screen: pairing by session or room, and figures that follow the taps."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import pytest

from protocol import encode, topics
from server.kiosk.devices import DeviceKind, DeviceRequest
from server.sample import TapBuilder, seed_minimal
from tests.integration.kiosk.conftest import SseReader, kiosk_for, make_device
from tests.support.served import ApiClient

pytestmark = pytest.mark.integration

OpenSse = Callable[[str, dict[str, str]], SseReader]


@contextmanager
def _paired(client: ApiClient, token: str) -> Iterator[httpx.Client]:
    """A fresh browser that opened the screen's pairing URL."""
    with httpx.Client(base_url=str(client.base_url), timeout=10) as browser:
        response = browser.get("/live", params={"token": token}, follow_redirects=False)
        assert response.status_code == 303
        yield browser


def test_a_screen_follows_its_sessions_check_ins(
    client: ApiClient, sse: OpenSse, probes: Callable[..., object]
) -> None:
    runtime = client.runtime
    seed = seed_minimal(runtime.database.write_sessions, datetime.now(UTC))
    token = make_device(
        runtime.database, DeviceRequest(DeviceKind.SCREEN, session_id=seed.session_id)
    )
    with _paired(client, token) as browser:
        entry = browser.get("/live", follow_redirects=False)
        assert entry.headers["location"] == f"/live/sessions/{seed.session_id}"
        page = browser.get(entry.headers["location"])
        assert page.status_code == 200
        assert seed.session_title in page.text
        cookies = dict(browser.cookies)

    stream = sse(f"/live/sessions/{seed.session_id}/events", cookies)
    assert stream.next("figures")["arrived"] == 0
    reader = probes(runtime.endpoint.host, runtime.endpoint.port)
    reader.publish(  # type: ignore[attr-defined]
        topics.taps(seed.reader_id), encode(TapBuilder.for_seed(seed).tap())
    )
    figures = stream.next("figures")
    assert figures["arrived"] == 1
    assert seed.member_name not in figures["html"]  # masked on a public screen


def test_a_screen_sees_no_other_session_and_a_kiosk_token_no_screen(client: ApiClient) -> None:
    runtime = client.runtime
    seed = seed_minimal(runtime.database.write_sessions, datetime.now(UTC))
    room_screen = make_device(runtime.database, DeviceRequest(DeviceKind.SCREEN, room_code="T101"))
    kiosk = kiosk_for(runtime.database, seed.reader_id)
    with _paired(client, room_screen) as browser:
        current = browser.get("/live", follow_redirects=False)
        assert current.headers["location"] == f"/live/sessions/{seed.session_id}"
        assert browser.get(f"/live/sessions/{seed.session_id}").status_code == 200
        assert browser.get(f"/live/sessions/{seed.session_id + 1}").status_code == 401
    with httpx.Client(
        base_url=str(client.base_url), cookies={"rollcall_screen": kiosk, "rollcall_kiosk": kiosk}
    ) as wrong:
        assert wrong.get(f"/live/sessions/{seed.session_id}").status_code == 401
        assert wrong.get(f"/live/sessions/{seed.session_id}/events").status_code == 401
