"""/api/v1 member categories and org-unit moves and deletions, with their refusals."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from server.api.app import create_app
from server.audit.chain import verify_chain
from server.db.models import AuditEntry
from server.domain.clock import FixedClock
from server.runtime import ServerRuntime
from server.settings import load_settings
from tests.support.console import grant_api_token
from tests.support.served import ApiClient, served

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
SEEDED = ["正式党员", "预备党员", "入党积极分子", "群众"]


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


def _refused(response: Any, code: int) -> str:
    assert response.status_code == code, response.text
    detail: str = response.json()["detail"]
    assert detail
    return detail


def _tree(api: ApiClient) -> None:
    for body in (
        {"code": "C", "name": "机关党委"},
        {"code": "B1", "name": "第一党支部", "parent_code": "C"},
        {"code": "B2", "name": "第二党支部", "parent_code": "C"},
        {"code": "G11", "name": "第一党小组", "parent_code": "B1"},
    ):
        _ok(api.post("/api/v1/org-units", json=body), 201)


def _member(api: ApiClient, number: str, unit: str, category: str = "正式党员") -> Any:
    body = {"employee_no": number, "name": "张三", "org_unit_code": unit, "category": category}
    return api.post("/api/v1/members", json=body)


def _audit(api: ApiClient) -> list[tuple[str, str]]:
    with api.runtime.database.sessions() as db:
        assert verify_chain(db) is None
        rows = db.execute(select(AuditEntry.action, AuditEntry.target).order_by(AuditEntry.id))
        return [(a, t) for a, t in rows]


def test_member_categories_are_a_configurable_list(client: ApiClient) -> None:
    listed = _ok(client.get("/api/v1/member-categories"))
    assert [c["name"] for c in listed] == SEEDED
    assert {c["members"] for c in listed} == {0}

    added = _ok(client.post("/api/v1/member-categories", json={"name": "发展对象"}), 201)
    assert added == {"name": "发展对象", "position": 5, "members": 0}
    _refused(client.post("/api/v1/member-categories", json={"name": "发展对象"}), 409)
    _refused(client.post("/api/v1/member-categories", json={"name": ""}), 422)
    _refused(client.post("/api/v1/member-categories", json={"name": "  "}), 422)

    _tree(client)
    _ok(_member(client, "E1", "B1", "发展对象"), 201)
    assert _ok(client.get("/api/v1/member-categories/发展对象"))["members"] == 1

    # Renaming carries the members along; moving changes only the order.
    renamed = _ok(client.patch("/api/v1/member-categories/发展对象", json={"name": "党员发展对象"}))
    assert renamed == {"name": "党员发展对象", "position": 5, "members": 1}
    assert _ok(client.get("/api/v1/members/E1"))["category"] == "党员发展对象"
    _ok(client.patch("/api/v1/member-categories/党员发展对象", json={"position": 0}))
    assert _ok(client.get("/api/v1/member-categories"))[0]["name"] == "党员发展对象"
    _refused(client.patch("/api/v1/member-categories/群众", json={"name": "正式党员"}), 409)
    _refused(client.patch("/api/v1/member-categories/NO", json={"name": "x"}), 404)
    _refused(client.get("/api/v1/member-categories/NO"), 404)

    # Deleting a category in use is refused; an unused one goes.
    detail = _refused(client.delete("/api/v1/member-categories/党员发展对象"), 409)
    assert "1 member" in detail
    _ok(client.delete("/api/v1/member-categories/群众"), 204)
    _refused(client.delete("/api/v1/member-categories/群众"), 404)
    names = [c["name"] for c in _ok(client.get("/api/v1/member-categories"))]
    assert names == ["党员发展对象", "正式党员", "预备党员", "入党积极分子"]

    actions = [a for a, _ in _audit(client) if a.startswith("member_category.")]
    assert actions == [
        "member_category.create",
        "member_category.change",
        "member_category.change",
        "member_category.delete",
    ]


def test_a_member_category_must_be_on_the_list(client: ApiClient) -> None:
    _tree(client)
    detail = _refused(_member(client, "E1", "B1", "党员"), 422)
    assert "'党员'" in detail
    assert "正式党员" in detail  # names the allowed ones
    _refused(client.get("/api/v1/members/E1"), 404)

    _ok(_member(client, "E1", "B1"), 201)
    _refused(client.patch("/api/v1/members/E1", json={"category": "游客"}), 422)
    assert _ok(client.get("/api/v1/members/E1"))["category"] == "正式党员"
    changed = _ok(client.patch("/api/v1/members/E1", json={"category": "预备党员"}))
    assert changed["category"] == "预备党员"
    assert ("member.change", "member E1") in _audit(client)


def test_org_units_move_but_never_under_themselves(client: ApiClient) -> None:
    _tree(client)
    _ok(_member(client, "E1", "G11"), 201)

    moved = _ok(client.patch("/api/v1/org-units/G11", json={"parent_code": "B2"}))
    assert moved == {"code": "G11", "name": "第一党小组", "parent_code": "B2", "children": []}
    tree = _ok(client.get("/api/v1/org-units/C"))
    assert [(b["code"], [g["code"] for g in b["children"]]) for b in tree["children"]] == [
        ("B1", []),
        ("B2", ["G11"]),
    ]
    # The members come along: the group's member now counts under B2.
    members = _ok(client.get("/api/v1/members?org_unit=B2"))
    assert [m["employee_no"] for m in members] == ["E1"]

    both = _ok(client.patch("/api/v1/org-units/B1", json={"name": "一支部", "parent_code": None}))
    assert both == {"code": "B1", "name": "一支部", "parent_code": None, "children": []}
    assert [u["code"] for u in _ok(client.get("/api/v1/org-units"))] == ["B1", "C"]

    before = _ok(client.get("/api/v1/org-units"))
    for code, parent in (("C", "G11"), ("C", "C"), ("B2", "G11")):
        detail = _refused(
            client.patch(f"/api/v1/org-units/{code}", json={"parent_code": parent}), 409
        )
        assert "sub-units" in detail
    _refused(client.patch("/api/v1/org-units/G11", json={"parent_code": "NO"}), 404)
    _refused(client.patch("/api/v1/org-units/G11", json={"name": ""}), 422)
    assert _ok(client.get("/api/v1/org-units")) == before
    changes = [t for a, t in _audit(client) if a == "org_unit.change"]
    assert changes == ["org unit G11", "org unit B1"]


def test_only_an_unused_org_unit_is_deleted(client: ApiClient) -> None:
    _tree(client)
    for body in (
        {"code": "EMPTY", "name": "待撤销支部", "parent_code": "C"},
        {"code": "AUD", "name": "有会议的支部", "parent_code": "C"},
        {"code": "GONE", "name": "成员已调出", "parent_code": "C"},
    ):
        _ok(client.post("/api/v1/org-units", json=body), 201)
    _ok(_member(client, "E1", "G11"), 201)
    _ok(_member(client, "E2", "GONE"), 201)
    moved = {"org_unit_code": "B2", "at": "2025-03-10T00:00:00Z"}
    _ok(client.post("/api/v1/members/E2/moves", json=moved), 204)
    _ok(
        client.post(
            "/api/v1/activity-types", json={"code": "t", "name": "党课", "default_points": 1}
        ),
        201,
    )
    planned = {
        "title": "党课",
        "activity_type_code": "t",
        "starts_at": "2025-03-10T14:00:00+08:00",
        "ends_at": "2025-03-10T16:00:00+08:00",
        "org_unit_codes": ["AUD"],
    }
    _ok(client.post("/api/v1/sessions", json=planned), 201)
    before = _ok(client.get("/api/v1/org-units"))

    for code, reason in (
        ("B1", "sub-units"),
        ("G11", "members"),
        ("GONE", "membership history"),
        ("AUD", "sessions' audience"),
    ):
        assert reason in _refused(client.delete(f"/api/v1/org-units/{code}"), 409), code
    _refused(client.delete("/api/v1/org-units/NO"), 404)
    assert _ok(client.get("/api/v1/org-units")) == before

    _ok(client.delete("/api/v1/org-units/EMPTY"), 204)
    _refused(client.get("/api/v1/org-units/EMPTY"), 404)
    assert ("org_unit.delete", "org unit EMPTY") in _audit(client)


def test_openapi_documents_the_organisation_admin(client: ApiClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, method, codes in (
        ("/api/v1/member-categories", "get", {"200"}),
        ("/api/v1/member-categories", "post", {"201", "409", "422"}),
        ("/api/v1/member-categories/{name}", "get", {"200", "404"}),
        ("/api/v1/member-categories/{name}", "patch", {"200", "404", "409", "422"}),
        ("/api/v1/member-categories/{name}", "delete", {"204", "404", "409"}),
        ("/api/v1/org-units/{code}", "patch", {"200", "404", "409", "422"}),
        ("/api/v1/org-units/{code}", "delete", {"204", "404", "409"}),
    ):
        responses = paths[path][method]["responses"]
        assert codes <= set(responses), (path, method, sorted(responses))
        assert "$ref" in str(responses["409" if "409" in codes else min(codes)]), (path, method)


def test_values_no_database_can_hold_are_bad_input(client: ApiClient) -> None:
    _tree(client)
    _refused(_member(client, "E1", "B1", "正式\x00党员"), 422)
    nul_name = {"employee_no": "E1", "name": "张\x00三", "org_unit_code": "B1", "category": "群众"}
    _refused(client.post("/api/v1/members", json=nul_name), 422)
    far = {"employee_no": "E1", "name": "张三", "org_unit_code": "B1", "category": "群众"}
    _refused(client.post("/api/v1/members", json={**far, "active_from": "0001-01-01"}), 422)
    _refused(client.post("/api/v1/members", json={**far, "active_to": "9999-12-31"}), 422)
    _refused(client.get("/api/v1/members/E1"), 404)
    # Past PostgreSQL's INTEGER and SQLite's 64-bit keys alike.
    _refused(client.get(f"/api/v1/sessions/{2**31}"), 422)
    _refused(client.get(f"/api/v1/series/{2**64}"), 422)
    _refused(client.get("/api/v1/org-units/C/publications/9999Q4"), 422)
    # A NUL in a path: refused (PostgreSQL) or simply not found (SQLite), never a 5xx.
    assert client.get("/api/v1/members/E%001").status_code in {404, 422}
    assert "member.create" not in {a for a, _ in _audit(client)}
