"""The /api/v1 endpoints for rules, closing, leave, ledger corrections, rankings, publication."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from protocol import TapMode
from server.api.app import create_app
from server.db.models import SessionAudience
from server.domain.clock import FixedClock
from server.runtime import ServerRuntime
from server.sample import MinimalSeed, TapBuilder, seed_minimal
from server.services.taps import record_taps
from server.services.unit_of_work import UnitOfWork
from server.settings import load_settings
from tests.support.console import grant_api_token
from tests.support.served import ApiClient, served

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # Monday 3 March 2025, 09:00 in Shanghai


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def app(
    database_url: str, tmp_path: Path, clock: FixedClock
) -> Iterator[tuple[ApiClient, MinimalSeed]]:
    # An unreachable external broker and no ingest: these tests need only the database.
    settings = load_settings(
        database_url=database_url, data_dir=tmp_path, mqtt_url="mqtt://127.0.0.1:1"
    )
    runtime = ServerRuntime(settings, clock=clock, ingest=False, scheduler=False)
    runtime.start()
    try:
        database = runtime.database
        seed = seed_minimal(database.write_sessions, NOW)
        with database.write_sessions.begin() as db:
            db.add(SessionAudience(session_id=seed.session_id, org_unit_id=seed.org_unit_id))
        with served(create_app(settings, runtime=runtime)) as client:
            client.runtime = runtime
            grant_api_token(client, runtime.database)
            yield client, seed
    finally:
        runtime.stop()


RULES = {
    "version": "branch/2025-1",
    "effective_from": "2025-01-01",
    "activities": {
        "test_study": {
            "category": "study",
            "present": 0,
            "late": 0,
            "absent": -1,
            "duration": {"points": 1, "minutes": 20, "max_points": 5},
        }
    },
    "caps": {"study": {"day": 2}},
}


def test_a_month_through_the_api(app: tuple[ApiClient, MinimalSeed], clock: FixedClock) -> None:
    client, seed = app
    assert client.post("/api/v1/points/rules", json=RULES).status_code == 201
    assert client.post("/api/v1/points/rules", json=RULES).status_code == 409
    assert [r["version"] for r in client.get("/api/v1/points/rules").json()] == ["branch/2025-1"]

    database = client.runtime.database
    taps = TapBuilder.for_seed(seed)
    record_taps(UnitOfWork(database.write_sessions), [taps.received(at=NOW)])
    record_taps(
        UnitOfWork(database.write_sessions),
        [taps.received(at=NOW + timedelta(minutes=50), mode=TapMode.CHECKOUT)],
    )

    early = client.post(f"/api/v1/sessions/{seed.session_id}/close")
    assert early.status_code == 409
    assert early.json()["error"] == "not_ready"

    clock.set(NOW + timedelta(hours=4))
    closed = client.post(f"/api/v1/sessions/{seed.session_id}/close")
    assert closed.status_code == 200, closed.text
    assert closed.json()["statuses"] == {"present": 1}
    assert client.post(f"/api/v1/sessions/{seed.session_id}/close").status_code == 409

    ranking = client.get("/api/v1/org-units/T01/rankings?start=2025-03-01&end=2025-04-01").json()
    # 50 minutes at 1 point per 20 = 2, within the daily cap of 2.
    assert ranking == [{"rank": 1, "employee_no": seed.employee_no, "name": "张三", "points": 2}]
    star = client.get("/api/v1/org-units/T01/monthly-star?year=2025&month=3").json()
    assert star["star"]["employee_no"] == seed.employee_no
    assert star["tie_breaks"][0].startswith("points")

    clock.set(datetime(2025, 4, 2, tzinfo=UTC))
    assert client.post("/api/v1/org-units/T01/publications/2025Q1").status_code == 201
    assert client.post("/api/v1/org-units/T01/publications/2025Q1").status_code == 409

    adjusted = client.post(
        f"/api/v1/members/{seed.employee_no}/adjustments",
        json={"amount": 3, "reason": "late-reported study, March"},
    )
    assert adjusted.status_code == 201
    assert adjusted.json()["balance"] == 5
    published = client.get("/api/v1/org-units/T01/publications/2025Q1").json()
    assert published["figures"]["members"][0]["points"] == 2  # frozen
    assert published["adjustments"] == []  # the adjustment falls in April

    entry = adjusted.json()["entry_id"]
    reversed_ = client.post(f"/api/v1/ledger/{entry}/reversal", json={"reason": "entered twice"})
    assert reversed_.status_code == 201
    assert reversed_.json()["balance"] == 2
    again = client.post(f"/api/v1/ledger/{entry}/reversal", json={"reason": "again"})
    assert again.status_code == 409

    preview = client.post(
        "/api/v1/points/rescore", json={"start": "2025-03-01", "end": "2025-04-01"}
    ).json()
    assert preview == {"applied": False, "changes": []}


def test_leave_and_recurrence_and_bad_input(app: tuple[ApiClient, MinimalSeed]) -> None:
    client, seed = app
    filed = client.post(
        f"/api/v1/sessions/{seed.session_id}/leave-requests",
        json={"employee_no": seed.employee_no, "reason": "出差"},
    )
    assert filed.status_code == 201
    decision = client.post(
        f"/api/v1/leave-requests/{filed.json()['id']}/decision",
        json={"approve": True, "approver": "书记"},
    )
    assert decision.json()["status"] == "approved"
    assert (
        client.post(
            f"/api/v1/leave-requests/{filed.json()['id']}/decision",
            json={"approve": False, "approver": "书记"},
        ).status_code
        == 409
    )

    plan = {
        "title": "主题党日",
        "activity_type_code": "test_study",
        "starts_at": "2025-03-07T14:30:00+08:00",
        "ends_at": "2025-03-07T16:30:00+08:00",
        "room_codes": ["T101"],
        "org_unit_codes": ["T01"],
        "recurrence_rule": "FREQ=MONTHLY;BYDAY=1FR;COUNT=3",
    }
    created = client.post("/api/v1/sessions", json=plan)
    assert created.status_code == 201
    assert len(created.json()["session_ids"]) == 3

    bad_rule = client.post("/api/v1/sessions", json={**plan, "recurrence_rule": "FREQ=SOMETIMES"})
    assert bad_rule.status_code == 422
    assert bad_rule.json()["error"] == "invalid"
    unknown_room = client.post("/api/v1/sessions", json={**plan, "room_codes": ["NOPE"]})
    assert unknown_room.status_code == 404
    inverted = client.post("/api/v1/sessions", json={**plan, "ends_at": plan["starts_at"]})
    assert inverted.status_code == 422
    assert client.post("/api/v1/sessions/999/close").status_code == 404
    assert (
        client.get("/api/v1/org-units/T01/rankings?start=2025-04-01&end=2025-03-01").status_code
        == 422
    )


def test_openapi_documents_the_endpoints(app: tuple[ApiClient, MinimalSeed]) -> None:
    client, _ = app
    paths = client.get("/openapi.json").json()["paths"]

    for path in (
        "/api/v1/sessions",
        "/api/v1/series",
        "/api/v1/sessions/{session_id}/close",
        "/api/v1/sessions/{session_id}/roster",
        "/api/v1/sessions/{session_id}/cancel",
        "/api/v1/sessions/{session_id}/leave-requests",
        "/api/v1/leave-requests/{request_id}/decision",
        "/api/v1/points/rules",
        "/api/v1/points/rescore",
        "/api/v1/members/{employee_no}/adjustments",
        "/api/v1/ledger/{entry_id}/reversal",
        "/api/v1/org-units/{code}/rankings",
        "/api/v1/org-units/{code}/monthly-star",
        "/api/v1/org-units/{code}/benchmarks",
        "/api/v1/org-units/{code}/publications/{quarter}",
        "/api/v1/members/{employee_no}/moves",
    ):
        assert path in paths, path
    assert "409" in paths["/api/v1/sessions/{session_id}/close"]["post"]["responses"]
