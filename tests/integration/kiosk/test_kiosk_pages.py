"""The kiosk page and its event stream, served with the real runtime: taps over MQTT to SSE."""

import re
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from protocol import TapMode, encode, topics
from server.kiosk.devices import DeviceKind, DeviceRequest
from server.kiosk.names import mask_name
from server.sample import TapBuilder, seed_minimal
from tests.integration.kiosk.conftest import SseReader, kiosk_for, make_device
from tests.support.served import ApiClient

pytestmark = pytest.mark.integration

OpenSse = Callable[[str, dict[str, str]], SseReader]


def pair(client: ApiClient, path: str, token: str, cookie: str) -> dict[str, str]:
    """Open the pairing URL as a fresh browser would; return the cookie it sets."""
    with httpx.Client(base_url=str(client.base_url)) as browser:
        response = browser.get(path, params={"token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == path
    set_cookie = response.headers["set-cookie"]
    assert f"{cookie}=" in set_cookie
    assert "httponly" in set_cookie.lower()
    assert f"path={path}" in set_cookie.lower()
    return {cookie: token}


def test_a_kiosk_tap_over_mqtt_reaches_the_paired_page(
    client: ApiClient, sse: OpenSse, probes: Callable[..., object]
) -> None:
    runtime = client.runtime
    seed = seed_minimal(runtime.database.write_sessions, datetime.now(UTC))
    token = kiosk_for(runtime.database, seed.reader_id)
    cookies = pair(client, "/kiosk", token, "rollcall_kiosk")

    with httpx.Client(base_url=str(client.base_url), cookies=cookies) as browser:
        page = browser.get("/kiosk")
    assert page.status_code == 200
    assert "请刷卡" in page.text
    assert token not in page.text

    stream = sse("/kiosk/events", cookies)
    assert stream.status == 200
    assert stream.next("ready")["reader_id"] == seed.reader_id

    reader = probes(runtime.endpoint.host, runtime.endpoint.port)
    taps = TapBuilder.for_seed(seed)
    tap = taps.tap(mode=TapMode.KIOSK)
    reader.publish(topics.taps(seed.reader_id), encode(tap))  # type: ignore[attr-defined]
    shown = stream.next("tap")
    assert shown["event_id"] == str(tap.event_id)
    assert shown["kind"] == "member"
    masked = mask_name(seed.member_name, "mask_middle")
    assert masked != seed.member_name
    assert f">{masked}<" in shown["html"]
    assert seed.member_name not in shown["html"]

    unknown = taps.tap(mode=TapMode.KIOSK, uid="DEADBEEF")
    reader.publish(topics.taps(seed.reader_id), encode(unknown))  # type: ignore[attr-defined]
    shown = stream.next("tap")
    assert (shown["event_id"], shown["kind"]) == (str(unknown.event_id), "unknown")
    assert client.runtime.settings.kiosk_register_hint in shown["html"]


def test_a_kiosk_sees_only_its_own_readers_taps(
    client: ApiClient, sse: OpenSse, probes: Callable[..., object]
) -> None:
    runtime = client.runtime
    seed = seed_minimal(runtime.database.write_sessions, datetime.now(UTC))
    # Another reader in kiosk mode would need its own registration; a check-in on the
    # paired reader is another reader's business as far as the kiosk is concerned.
    cookies = pair(client, "/kiosk", kiosk_for(runtime.database, seed.reader_id), "rollcall_kiosk")
    stream = sse("/kiosk/events", cookies)
    stream.next("ready")
    reader = probes(runtime.endpoint.host, runtime.endpoint.port)
    taps = TapBuilder.for_seed(seed)
    reader.publish(topics.taps(seed.reader_id), encode(taps.tap()))  # type: ignore[attr-defined]
    kiosk_tap = taps.tap(mode=TapMode.KIOSK)
    reader.publish(topics.taps(seed.reader_id), encode(kiosk_tap))  # type: ignore[attr-defined]
    assert stream.next("tap")["event_id"] == str(kiosk_tap.event_id)


def test_pairing_refuses_unknown_revoked_and_wrong_kind_tokens(client: ApiClient) -> None:
    runtime = client.runtime
    seed = seed_minimal(runtime.database.write_sessions, datetime.now(UTC))
    screen = make_device(
        runtime.database, DeviceRequest(DeviceKind.SCREEN, session_id=seed.session_id)
    )
    for token in ("nonsense", screen):
        response = client.get("/kiosk", params={"token": token}, follow_redirects=False)
        assert response.status_code == 401
        assert "set-cookie" not in response.headers
    with httpx.Client(base_url=str(client.base_url), cookies={"rollcall_kiosk": screen}) as other:
        assert other.get("/kiosk").status_code == 401
    assert client.get("/kiosk").status_code == 401
    assert client.get("/kiosk/events").status_code == 401
    kiosk = kiosk_for(runtime.database, seed.reader_id)
    assert client.get("/live", params={"token": kiosk}, follow_redirects=False).status_code == 401


def test_the_token_never_shows_in_the_page_or_the_redirect(client: ApiClient) -> None:
    runtime = client.runtime
    seed = seed_minimal(runtime.database.write_sessions, datetime.now(UTC))
    token = kiosk_for(runtime.database, seed.reader_id)
    response = client.get("/kiosk", params={"token": token}, follow_redirects=False)
    assert not re.search(re.escape(token), response.headers["location"])
