"""/api/v1 sessions: list with filters and pages, one with rooms/audience/series, edit, series."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from server.api.app import create_app
from server.db.models import AuditEntry
from server.domain.clock import FixedClock
from server.runtime import ServerRuntime
from server.settings import load_settings
from tests.support.console import grant_api_token
from tests.support.served import ApiClient, served

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[ApiClient]:
    # An unreachable external broker, no ingest and no scheduler: only the database.
    settings = load_settings(
        database_url=database_url, data_dir=tmp_path, mqtt_url="mqtt://127.0.0.1:1"
    )
    runtime = ServerRuntime(settings, clock=FixedClock(NOW), ingest=False, scheduler=False)
    runtime.start()
    try:
        with served(create_app(settings, runtime=runtime)) as api:
            api.runtime = runtime
            grant_api_token(api, runtime.database)
            yield api
    finally:
        runtime.stop()


def _ok(response: Any, code: int = 200) -> Any:
    assert response.status_code == code, response.text
    return None if code == 204 else response.json()


def _organisation(api: ApiClient) -> None:
    for path, body in (
        ("/org-units", {"code": "C", "name": "机关党委"}),
        ("/org-units", {"code": "B1", "name": "第一党支部", "parent_code": "C"}),
        ("/org-units", {"code": "B2", "name": "第二党支部", "parent_code": "C"}),
        ("/org-units", {"code": "G11", "name": "第一党小组", "parent_code": "B1"}),
        ("/rooms", {"code": "R1", "name": "党员活动室"}),
        ("/rooms", {"code": "R2", "name": "一号会议室"}),
        ("/activity-types", {"code": "lecture", "name": "党课", "default_points": 2}),
        ("/activity-types", {"code": "study", "name": "学习", "default_points": 1}),
    ):
        _ok(api.post(f"/api/v1{path}", json=body), 201)
    for number, unit in (("E1", "G11"), ("E2", "B2")):
        member = {"employee_no": number, "name": "张三", "org_unit_code": unit}
        _ok(api.post("/api/v1/members", json={**member, "category": "正式党员"}), 201)


def _plan(api: ApiClient, **overrides: Any) -> list[int]:
    body = {
        "title": "三月党课",
        "activity_type_code": "lecture",
        "starts_at": "2025-03-10T14:00:00+08:00",
        "ends_at": "2025-03-10T16:00:00+08:00",
        "room_codes": ["R1"],
        "org_unit_codes": ["B1"],
        **overrides,
    }
    created: list[int] = _ok(api.post("/api/v1/sessions", json=body), 201)["session_ids"]
    return created


def _audit_actions(api: ApiClient) -> list[str]:
    with api.runtime.database.sessions() as db:
        return list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def test_a_session_shows_its_rooms_audience_and_series(client: ApiClient) -> None:
    _organisation(client)
    (lecture,) = _plan(client, employee_nos=["E2"], requires_checkout=True, min_stay_minutes=90)
    (make_up,) = _plan(
        client, starts_at="2025-03-12T19:00:00+08:00", ends_at="2025-03-12T21:00:00+08:00"
    )
    series_id = _ok(
        client.post(
            "/api/v1/series", json={"title": "三月党课", "session_ids": [make_up, lecture]}
        ),
        201,
    )["series_id"]

    one = _ok(client.get(f"/api/v1/sessions/{lecture}"))
    assert one["title"] == "三月党课"
    assert one["activity_type"] == "lecture"
    assert one["status"] == "planned"
    assert datetime.fromisoformat(one["starts_at"]) == datetime(2025, 3, 10, 6, tzinfo=UTC)
    assert one["rooms"] == ["R1"]
    assert one["audience"] == {"org_units": ["B1"], "members": ["E2"]}
    assert (one["requires_checkout"], one["min_stay_minutes"]) == (True, 90)
    assert one["series"] == {
        "id": series_id,
        "title": "三月党课",
        "activity_type": "lecture",
        "session_ids": [lecture, make_up],
    }

    assert _ok(client.get(f"/api/v1/series/{series_id}")) == one["series"]
    assert _ok(client.get("/api/v1/series")) == [one["series"]]
    missing = client.get("/api/v1/series/999")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert client.get("/api/v1/sessions/999").status_code == 404
    assert client.get("/api/v1/sessions/0").status_code == 422


def test_sessions_are_listed_by_day_unit_type_and_status(client: ApiClient) -> None:
    _organisation(client)
    (past,) = _plan(
        client,
        starts_at="2025-03-01T14:00:00+08:00",
        ends_at="2025-03-01T16:00:00+08:00",
        org_unit_codes=["B2"],
    )
    (running,) = _plan(
        client,
        title="学习",
        activity_type_code="study",
        starts_at="2025-03-03T08:30:00+08:00",
        ends_at="2025-03-03T10:00:00+08:00",
        org_unit_codes=["G11"],
    )
    weekly = _plan(client, recurrence_rule="FREQ=WEEKLY;COUNT=3", org_unit_codes=[])
    _ok(client.post(f"/api/v1/sessions/{weekly[2]}/cancel", json={"reason": "会议室检修"}), 204)

    def ids(query: str = "") -> tuple[int, list[int]]:
        page = _ok(client.get(f"/api/v1/sessions{query}"))
        return page["total"], [s["id"] for s in page["items"]]

    assert ids() == (5, [past, running, *weekly])
    assert ids("?start=2025-03-03&end=2025-03-11") == (2, [running, weekly[0]])
    # Local days: 08:30 on 3 March in Shanghai is 3 March, though 2 March in UTC.
    assert ids("?start=2025-03-03&end=2025-03-04") == (1, [running])
    assert ids("?org_unit=B1") == (1, [running])  # G11 is under B1
    assert ids("?org_unit=C") == (2, [past, running])
    assert ids("?activity_type=study") == (1, [running])
    assert ids("?status=ended") == (1, [past])
    assert ids("?status=running") == (1, [running])
    assert ids("?status=planned") == (2, weekly[:2])
    assert ids("?status=cancelled") == (1, [weekly[2]])
    assert ids("?status=closed") == (0, [])
    assert ids("?limit=2&offset=1") == (5, [running, weekly[0]])

    page = _ok(client.get("/api/v1/sessions?status=running"))
    assert page["items"][0] == {
        "id": running,
        "title": "学习",
        "activity_type": "study",
        "starts_at": page["items"][0]["starts_at"],
        "ends_at": page["items"][0]["ends_at"],
        "status": "running",
        "rooms": ["R1"],
        "series_id": None,
    }
    for query, code in (
        ("?org_unit=NO", 404),
        ("?activity_type=NO", 404),
        ("?status=asleep", 422),
        ("?start=2025-03-05&end=2025-03-01", 422),
        ("?start=not-a-day", 422),
        ("?limit=0", 422),
    ):
        assert client.get(f"/api/v1/sessions{query}").status_code == code, query


def test_a_planned_session_is_edited_and_audited(client: ApiClient) -> None:
    _organisation(client)
    (lecture,) = _plan(client)

    changed = _ok(
        client.patch(
            f"/api/v1/sessions/{lecture}",
            json={
                "title": "三月党课（调整）",
                "starts_at": "2025-03-11T09:00:00+08:00",
                "ends_at": "2025-03-11T11:30:00+08:00",
                "checkin_open_minutes": 15,
                "late_grace_minutes": 10,
                "room_codes": ["R2", "R1"],
                "org_unit_codes": ["B2"],
                "employee_nos": ["E1"],
                "requires_checkout": True,
                "min_stay_minutes": 120,
                "allow_walk_in": False,
            },
        )
    )
    assert changed["title"] == "三月党课（调整）"
    assert datetime.fromisoformat(changed["starts_at"]) == datetime(2025, 3, 11, 1, tzinfo=UTC)
    assert datetime.fromisoformat(changed["ends_at"]) == datetime(2025, 3, 11, 3, 30, tzinfo=UTC)
    assert (changed["checkin_open_minutes"], changed["late_grace_minutes"]) == (15, 10)
    assert changed["rooms"] == ["R1", "R2"]
    assert changed["audience"] == {"org_units": ["B2"], "members": ["E1"]}
    assert (changed["requires_checkout"], changed["min_stay_minutes"]) == (True, 120)
    assert changed["allow_walk_in"] is False
    assert _ok(client.get(f"/api/v1/sessions/{lecture}")) == changed

    # Only what is sent changes; an empty list clears the rooms or that part of the audience.
    partial = _ok(
        client.patch(f"/api/v1/sessions/{lecture}", json={"room_codes": [], "employee_nos": []})
    )
    assert partial["rooms"] == []
    assert partial["audience"] == {"org_units": ["B2"], "members": []}
    assert partial["title"] == "三月党课（调整）"
    assert _audit_actions(client).count("session.edit") == 2


def test_bad_edits_change_nothing(client: ApiClient) -> None:
    _organisation(client)
    (lecture,) = _plan(client)
    before = _ok(client.get(f"/api/v1/sessions/{lecture}"))
    audited = len(_audit_actions(client))

    for body, code in (
        ({"ends_at": "2025-03-10T13:00:00+08:00"}, 422),  # ends before it starts
        ({"starts_at": "2025-03-03T09:10:00+08:00"}, 422),  # check-in would open in the past
        ({"starts_at": "2025-03-10T14:00:00"}, 422),  # no time zone
        ({"title": "   "}, 422),
        ({"checkin_open_minutes": -1}, 422),
        ({"min_stay_minutes": 600}, 422),  # longer than the session
        ({"room_codes": ["R1", "NO"]}, 404),
        ({"org_unit_codes": ["NO"]}, 404),
        ({"employee_nos": ["E404"]}, 404),
        ({"activity_type_code": "study"}, 422),  # not editable here
    ):
        response = client.patch(f"/api/v1/sessions/{lecture}", json=body)
        assert response.status_code == code, (body, response.text)
        assert response.json()["detail"], body
    assert client.patch("/api/v1/sessions/999", json={"title": "x"}).status_code == 404
    assert _ok(client.get(f"/api/v1/sessions/{lecture}")) == before
    assert len(_audit_actions(client)) == audited


def test_started_closed_and_cancelled_sessions_cannot_be_edited(client: ApiClient) -> None:
    _organisation(client)
    # Starts at 09:20, so its check-in opened at 08:50, before NOW (09:00).
    (opening,) = _plan(
        client, starts_at="2025-03-03T09:20:00+08:00", ends_at="2025-03-03T11:00:00+08:00"
    )
    (running,) = _plan(
        client, starts_at="2025-03-03T08:00:00+08:00", ends_at="2025-03-03T11:00:00+08:00"
    )
    (ended,) = _plan(
        client, starts_at="2025-02-20T08:00:00+08:00", ends_at="2025-02-20T10:00:00+08:00"
    )
    (cancelled,) = _plan(client)
    _ok(client.post(f"/api/v1/sessions/{cancelled}/cancel", json={"reason": "改期"}), 204)
    closed = _ok(client.post(f"/api/v1/sessions/{ended}/close"))
    assert closed["session_id"] == ended

    for session_id, status in (
        (opening, "planned"),
        (running, "running"),
        (ended, "closed"),
        (cancelled, "cancelled"),
    ):
        before = _ok(client.get(f"/api/v1/sessions/{session_id}"))
        assert before["status"] == status
        refused = client.patch(f"/api/v1/sessions/{session_id}", json={"title": "改"})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "conflict"
        assert _ok(client.get(f"/api/v1/sessions/{session_id}")) == before
    actions = _audit_actions(client)
    assert {"session.plan", "session.cancel", "session.close"} <= set(actions)
    assert "session.edit" not in actions


def test_openapi_documents_the_session_endpoints(client: ApiClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, method, codes in (
        ("/api/v1/sessions", "get", {"200", "404", "422"}),
        ("/api/v1/sessions/{session_id}", "get", {"200", "404", "422"}),
        ("/api/v1/sessions/{session_id}", "patch", {"200", "404", "409", "422"}),
        ("/api/v1/series", "get", {"200", "422"}),
        ("/api/v1/series/{series_id}", "get", {"200", "404", "422"}),
    ):
        responses = paths[path][method]["responses"]
        assert codes <= set(responses), (path, method, sorted(responses))
        assert "$ref" in str(responses["200"]), (path, method)
