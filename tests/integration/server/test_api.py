"""The HTTP API served by uvicorn with its real lifespan: migrations, broker and ingest."""

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from protocol import Ack, AckResult, decode_as, encode, topics
from server.api.app import create_app
from server.runtime import ServerRuntime
from server.sample import MinimalSeed, TapBuilder, seed_minimal
from server.services.taps import record_taps
from server.services.unit_of_work import UnitOfWork
from server.settings import load_settings
from tests.support.console import grant_api_token

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
Probes = Callable[..., Any]


class Client(httpx.Client):
    """An HTTP client for the served app, knowing the app's runtime."""

    runtime: ServerRuntime


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[Client]:
    settings = load_settings(database_url=database_url, data_dir=tmp_path)
    app = create_app(settings)
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    port = sock.getsockname()[1]
    try:
        with Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            http.runtime = app.state.runtime
            grant_api_token(http, http.runtime.database)
            yield http
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def runtime_of(client: Client) -> ServerRuntime:
    return client.runtime


@pytest.fixture
def checked_in(client: Client) -> MinimalSeed:
    """The seeded member checked in to the seeded session."""
    database = runtime_of(client).database
    seed = seed_minimal(database.write_sessions, NOW)
    record_taps(UnitOfWork(database.write_sessions), [TapBuilder.for_seed(seed).received()])
    return seed


def test_health_is_ok_with_database_ingest_and_embedded_broker(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["ingest"] == {
        "running": True,
        "connected": True,
        "queued": 0,
        "counters": body["ingest"]["counters"],
    }
    assert body["broker"]["kind"] == "embedded"
    assert body["broker"]["url"] == runtime_of(client).endpoint.url
    assert "password" not in body["database"]["url"]


def test_health_is_unavailable_when_ingest_is_down(client: Client) -> None:
    ingest = runtime_of(client).ingest
    assert ingest is not None
    ingest.stop()

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["ingest"]["connected"] is False


def test_member_points(client: Client, checked_in: MinimalSeed) -> None:
    response = client.get(f"/api/v1/members/{checked_in.employee_no}/points")

    assert response.status_code == 200
    body = response.json()
    assert (body["employee_no"], body["name"], body["org_unit"], body["balance"]) == (
        "E00001",
        "张三",
        "测试支部",
        2,
    )
    [entry] = body["entries"]
    assert entry["amount"] == 2
    assert entry["source"] == "attendance"
    assert entry["rule_version"] == "fixed-per-activity/1"
    assert entry["session_id"] == checked_in.session_id
    assert entry["session_title"] == "测试学习会"
    assert datetime.fromisoformat(entry["created_at"]) == NOW


def test_session_attendance(client: Client, checked_in: MinimalSeed) -> None:
    response = client.get(f"/api/v1/sessions/{checked_in.session_id}/attendance")

    assert response.status_code == 200
    body = response.json()
    assert body["title"] == "测试学习会"
    assert body["activity_type"] == "学习"
    assert body["rooms"] == ["测试会议室"]
    [attendee] = body["attendees"]
    assert (attendee["employee_no"], attendee["status"]) == ("E00001", "present")
    assert datetime.fromisoformat(attendee["checked_in_at"]) == NOW
    assert attendee["checked_out_at"] is None


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/v1/members/E99999/points", "no member with employee number E99999"),
        ("/api/v1/sessions/999/attendance", "no session 999"),
    ],
)
def test_unknown_ids_are_404_with_a_clear_error(client: Client, path: str, detail: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": detail}


def test_invalid_parameters_are_422(client: Client) -> None:
    assert client.get("/api/v1/members/E1/points?limit=0").status_code == 422
    assert client.get("/api/v1/sessions/abc/attendance").status_code == 422


def test_openapi_documents_the_routes_and_their_models(client: Client) -> None:
    schema = client.get("/openapi.json").json()

    paths = schema["paths"]
    assert {
        "/healthz",
        "/api/v1/members/{employee_no}/points",
        "/api/v1/sessions/{session_id}/attendance",
    } <= set(paths)
    points = paths["/api/v1/members/{employee_no}/points"]["get"]["responses"]
    assert points["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "MemberPointsOut"
    )
    assert points["404"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorOut")
    assert {"MemberPointsOut", "SessionAttendanceOut", "HealthOut"} <= set(
        schema["components"]["schemas"]
    )


def test_a_tap_over_the_embedded_broker_shows_up_in_the_api(client: Client, probes: Probes) -> None:
    runtime = runtime_of(client)
    now = datetime.now(UTC)  # the running ingest worker uses the real clock
    seed = seed_minimal(runtime.database.write_sessions, now)
    reader = probes(runtime.endpoint.host, runtime.endpoint.port, "reader")
    reader.subscribe(topics.acks(seed.reader_id))
    tap = TapBuilder.for_seed(seed).tap()

    reader.publish(topics.taps(seed.reader_id), encode(tap))
    ack = decode_as(reader.next().payload, Ack)

    assert (ack.event_id, ack.result, ack.points) == (tap.event_id, AckResult.ACCEPTED, 2)
    balance = client.get(f"/api/v1/members/{seed.employee_no}/points").json()["balance"]
    assert balance == 2
