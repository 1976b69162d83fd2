"""The /api/v1 endpoints that build the organisation: org units, members, activity types, rooms."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.api.app import create_app
from server.domain.clock import FixedClock
from server.runtime import ServerRuntime
from server.settings import load_settings
from tests.support.console import grant_api_token
from tests.support.served import ApiClient, served

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)


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


def _tree(api: ApiClient) -> None:
    for body in (
        {"code": "C", "name": "机关党委"},
        {"code": "B1", "name": "第一党支部", "parent_code": "C"},
        {"code": "B2", "name": "第二党支部", "parent_code": "C"},
        {"code": "G11", "name": "第一党小组", "parent_code": "B1"},
    ):
        created = api.post("/api/v1/org-units", json=body)
        assert created.status_code == 201, created.text


def test_org_units_form_a_tree(client: ApiClient) -> None:
    _tree(client)

    tree = client.get("/api/v1/org-units").json()
    assert [u["code"] for u in tree] == ["C"]
    assert [b["code"] for b in tree[0]["children"]] == ["B1", "B2"]
    assert tree[0]["children"][0]["children"] == [
        {"code": "G11", "name": "第一党小组", "parent_code": "B1", "children": []}
    ]

    renamed = client.patch("/api/v1/org-units/B2", json={"name": "运行保障部党支部"})
    assert renamed.status_code == 200
    assert renamed.json()["parent_code"] == "C"
    one = client.get("/api/v1/org-units/B2").json()
    assert one == {"code": "B2", "name": "运行保障部党支部", "parent_code": "C", "children": []}

    duplicate = client.post("/api/v1/org-units", json={"code": "B1", "name": "again"})
    assert duplicate.status_code == 409
    assert duplicate.json()["error"] == "conflict"
    orphan = client.post("/api/v1/org-units", json={"code": "X", "name": "x", "parent_code": "NO"})
    assert orphan.status_code == 404
    assert client.get("/api/v1/org-units/NO").status_code == 404
    assert client.patch("/api/v1/org-units/NO", json={"name": "x"}).status_code == 404
    assert client.post("/api/v1/org-units", json={"code": "", "name": "x"}).status_code == 422
    blank = client.patch("/api/v1/org-units/B1", json={"name": "   "})
    assert blank.status_code == 422
    assert client.get("/api/v1/org-units/B1").json()["name"] == "第一党支部"


def test_members_are_created_changed_and_found(client: ApiClient) -> None:
    _tree(client)
    member = {
        "employee_no": "E1",
        "name": "张三",
        "org_unit_code": "G11",
        "category": "正式党员",
        "active_from": "2020-07-01",
    }
    created = client.post("/api/v1/members", json=member)
    assert created.status_code == 201, created.text
    assert created.json() == {
        "employee_no": "E1",
        "name": "张三",
        "org_unit": "G11",
        "category": "正式党员",
        "active_from": "2020-07-01",
        "active_to": None,
    }
    second = {**member, "employee_no": "E2", "name": "李四", "org_unit_code": "B2"}
    assert client.post("/api/v1/members", json=second).status_code == 201

    assert client.post("/api/v1/members", json=member).status_code == 409
    unknown_unit = client.post(
        "/api/v1/members", json={**member, "employee_no": "E3", "org_unit_code": "NO"}
    )
    assert unknown_unit.status_code == 404
    inverted = client.post(
        "/api/v1/members", json={**member, "employee_no": "E3", "active_to": "2019-01-01"}
    )
    assert inverted.status_code == 422
    assert inverted.json()["error"] == "invalid"
    assert client.get("/api/v1/members/E3").status_code == 404

    changed = client.patch(
        "/api/v1/members/E1", json={"category": "预备党员", "active_to": "2025-12-31"}
    )
    assert changed.status_code == 200
    assert (changed.json()["category"], changed.json()["active_to"]) == ("预备党员", "2025-12-31")
    cleared = client.patch("/api/v1/members/E1", json={"active_to": None}).json()
    assert (cleared["name"], cleared["active_to"]) == ("张三", None)
    too_early = client.patch("/api/v1/members/E1", json={"active_to": "2019-01-01"})
    assert too_early.status_code == 422
    assert client.patch("/api/v1/members/NO", json={"name": "x"}).status_code == 404
    assert client.patch("/api/v1/members/E1", json={"employee_no": "E9"}).status_code == 422

    def numbers(query: str) -> list[str]:
        found = client.get(f"/api/v1/members{query}")
        assert found.status_code == 200, found.text
        return [m["employee_no"] for m in found.json()]

    assert numbers("") == ["E1", "E2"]
    assert numbers("?org_unit=C") == ["E1", "E2"]
    assert numbers("?org_unit=B1") == ["E1"]
    assert numbers("?org_unit=B1&include_sub_units=false") == []
    assert numbers("?q=李") == ["E2"]
    assert numbers("?limit=1&offset=1") == ["E2"]
    assert client.get("/api/v1/members?org_unit=NO").status_code == 404

    moved = client.post(
        "/api/v1/members/E1/moves", json={"org_unit_code": "B2", "at": "2025-03-10T00:00:00Z"}
    )
    assert moved.status_code == 204
    assert client.get("/api/v1/members/E1").json()["org_unit"] == "B2"


def test_activity_types_and_rooms(client: ApiClient) -> None:
    study = {"code": "night_school", "name": "夜校", "category": "study", "default_points": 3}
    created = client.post("/api/v1/activity-types", json=study)
    assert created.status_code == 201, created.text
    assert created.json() == study
    assert client.post("/api/v1/activity-types", json=study).status_code == 409
    negative = client.post(
        "/api/v1/activity-types", json={**study, "code": "neg", "default_points": -1}
    )
    assert negative.status_code == 422
    listed = client.get("/api/v1/activity-types").json()
    assert study in listed

    assert client.post("/api/v1/rooms", json={"code": "R9", "name": "大礼堂"}).status_code == 201
    assert client.post("/api/v1/rooms", json={"code": "R9", "name": "again"}).status_code == 409
    assert client.get("/api/v1/rooms").json() == [{"code": "R9", "name": "大礼堂"}]

    # A session can be planned with what was just created.
    _tree(client)
    planned = client.post(
        "/api/v1/sessions",
        json={
            "title": "夜校第一讲",
            "activity_type_code": "night_school",
            "starts_at": "2025-03-07T19:00:00+08:00",
            "ends_at": "2025-03-07T21:00:00+08:00",
            "room_codes": ["R9"],
            "org_unit_codes": ["B1"],
        },
    )
    assert planned.status_code == 201, planned.text


def test_openapi_documents_the_organisation(client: ApiClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, method, codes in (
        ("/api/v1/org-units", "post", {"201", "404", "409", "422"}),
        ("/api/v1/org-units", "get", {"200"}),
        ("/api/v1/org-units/{code}", "get", {"200", "404"}),
        ("/api/v1/org-units/{code}", "patch", {"200", "404", "422"}),
        ("/api/v1/members", "post", {"201", "404", "409", "422"}),
        ("/api/v1/members", "get", {"200", "404"}),
        ("/api/v1/members/{employee_no}", "get", {"200", "404"}),
        ("/api/v1/members/{employee_no}", "patch", {"200", "404", "422"}),
        ("/api/v1/activity-types", "post", {"201", "409", "422"}),
        ("/api/v1/activity-types", "get", {"200"}),
        ("/api/v1/rooms", "post", {"201", "409", "422"}),
        ("/api/v1/rooms", "get", {"200"}),
    ):
        responses = paths[path][method]["responses"]
        assert codes <= set(responses), (path, method, sorted(responses))
        assert "$ref" in str(responses[min(codes)]), (path, method)
