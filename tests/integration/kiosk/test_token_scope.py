"""A device token opens its own screen and stream, and nothing else the app serves.

Every route of the app is requested with a kiosk token and with a screen token,
each as its cookie (under every cookie name a device uses), as a bearer token
and as a `token` query parameter; whatever is not that device's own screen must
refuse (401, 403, a redirect to sign-in) or answer exactly as it answers nobody.
"""

import re
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Mount

from server.kiosk.devices import DeviceKind, DeviceRequest
from server.sample import seed_minimal
from tests.integration.kiosk.conftest import kiosk_for, make_device
from tests.support.served import ApiClient

pytestmark = pytest.mark.integration

DEVICE_COOKIES = ("rollcall_kiosk", "rollcall_screen")
# What each kind of token may open (the pairing entry points and their own screens).
OWN = {
    DeviceKind.KIOSK: {"/kiosk", "/kiosk/events"},
    DeviceKind.SCREEN: {
        "/live",
        "/live/sessions/{session_id}",
        "/live/sessions/{session_id}/events",
    },
}
REFUSED = {401, 403}
# Answers that read and change nothing (a form posted without its fields …).
UNTOUCHED = {404, 405, 422}


def _concrete(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: ids.get(m.group(1), "1"), path)


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route of the app, included routers flattened."""
    found: list[tuple[str, str]] = []
    for route in app.routes:
        if isinstance(route, Mount):
            found.append(("GET", f"{route.path}/kiosk.js"))
            continue
        # FastAPI keeps an included router as one entry that expands to its routes.
        expand = getattr(route, "effective_route_contexts", None)
        leaves = list(expand()) if callable(expand) else [route]
        for leaf in leaves:
            methods = set(getattr(leaf, "methods", None) or {"GET"})
            found.extend((m, leaf.path) for m in sorted(methods - {"HEAD", "OPTIONS"}))
    return found


def _is_refusal(response: httpx.Response) -> bool:
    if response.status_code in REFUSED:
        return True
    location = response.headers.get("location", "")
    return response.status_code in (302, 303, 307) and location.startswith("/admin/login")


# The rules are the app's, not the database's: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("kind", list(DeviceKind))
def test_a_device_token_opens_nothing_but_its_own_screen(
    app: FastAPI, client: ApiClient, kind: DeviceKind
) -> None:
    runtime = client.runtime
    seed = seed_minimal(runtime.database.write_sessions, datetime.now(UTC))
    if kind is DeviceKind.KIOSK:
        token = kiosk_for(runtime.database, seed.reader_id)
    else:
        token = make_device(
            runtime.database, DeviceRequest(DeviceKind.SCREEN, session_id=seed.session_id)
        )
    ids = {"session_id": str(seed.session_id), "employee_no": seed.employee_no}
    checked = 0
    opened: list[str] = []
    api_opened: list[str] = []
    base = str(client.base_url)
    nobody = httpx.Client(base_url=base, timeout=10)
    devices = {
        "cookie": httpx.Client(
            base_url=base, timeout=10, cookies=dict.fromkeys(DEVICE_COOKIES, token)
        ),
        "bearer": httpx.Client(
            base_url=base, timeout=10, headers={"Authorization": f"Bearer {token}"}
        ),
        "query": httpx.Client(base_url=base, timeout=10),
    }
    routes = _routes(app)
    assert {"/kiosk", "/live", "/admin/login"} <= {path for _, path in routes}
    for method, template in routes:
        if template in OWN[kind]:
            continue
        path = _concrete(template, ids)
        baseline = nobody.request(method, path, follow_redirects=False)
        for how, device in devices.items():
            response = device.request(
                method,
                path,
                params={"token": token} if how == "query" else None,
                follow_redirects=False,
            )
            where = f"{method} {path} with the {kind} token as {how}: {response.status_code}"
            if path.startswith("/api/"):
                if not _is_refusal(response):
                    api_opened.append(where)
            elif not (
                _is_refusal(response)
                or response.status_code in UNTOUCHED
                # Public pages (sign-in form, health, static files) answer as to anybody.
                or response.status_code == baseline.status_code
            ):
                opened.append(where)
            if how != "query":  # a page may echo its own URL back; that grants nothing
                assert token not in response.text, where
            checked += 1
    for one in (nobody, *devices.values()):
        one.close()
    assert checked > 30
    assert not opened, "\n".join(opened)
    assert not api_opened, "\n".join(api_opened)
