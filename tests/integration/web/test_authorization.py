"""Authorization: an org admin of branch A meets 403/404 for every page and API object of branch B.

The routes are enumerated from the app, so a new page or endpoint is covered the
day it is added: a path parameter this test cannot fill with one of branch B's
objects fails the test until someone says what it names.
"""

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import httpx
import pytest
from sqlalchemy import func, select

from server.db.models import (
    ActivityType,
    AttendanceSession,
    AuditEntry,
    Card,
    ConsoleUser,
    EnrollRequest,
    SessionAudience,
    UnknownCard,
)
from server.services import leave, ledger
from server.services import sessions as session_service
from server.services.auth import Role
from server.services.unit_of_work import UnitOfWork
from tests.support.console import (
    PASSWORD,
    Branches,
    app_routes,
    grant_api_token,
    make_user,
    path_params,
    sign_in,
)

pytestmark = pytest.mark.integration

# What branch B's members and sessions are called: none may show to branch A's admin.
B_MARKERS: Final = ("赵六", "钱七", "孙八", "B001", "B002", "B003", "第二支部党员大会")
# Routes outside the console and the API, and the sign-in machinery everyone may use.
PUBLIC: Final = re.compile(
    r"^/(healthz|docs|redoc|openapi\.json|kiosk|live)|^/admin/(login|logout|lang)$"
)
# Path parameters that name no branch's object (organisation-wide settings and devices).
GLOBAL_PARAMS: Final = {"reader_id", "name", "job_id", "device_id", "unknown_id"}
UNSAFE: Final = ("POST", "PUT", "PATCH", "DELETE")
# Posts that only read (an export is a read, logged): open to auditors.
READING_POSTS: Final = frozenset({"/admin/exports", "/admin/rules/preview"})


@dataclass
class Site:
    """The console with users, branch B's objects and clients signed in as each role."""

    console: Any
    branches: Branches
    values: dict[str, int | str]
    org_admin: httpx.Client
    org_admin_csrf: str
    org_admin_api: httpx.Client
    auditor: httpx.Client
    auditor_csrf: str


@pytest.fixture
def site(sqlite_console: Any, branches: Branches) -> Any:
    console = sqlite_console
    database, now, zone = console.database, console.clock.now(), console.settings.zone
    make_user(database, "root", Role.SUPER_ADMIN)
    make_user(database, "admin-a", Role.ORG_ADMIN, org_unit_id=branches.branch_a_id)
    make_user(database, "clerk", Role.AUDITOR)
    uow = UnitOfWork(database.write_sessions)
    b_member = branches.member_ids["B001"]
    with database.write_sessions.begin() as db:
        enrol = EnrollRequest(
            reader_id=branches.reader_id,
            member_id=b_member,
            requested_by="root",
            created_at=now,
            expires_at=now,
        )
        db.add(enrol)
        db.flush()
        enrol_id = enrol.id
    with database.sessions() as db:
        card_id = db.scalar(select(Card.id).where(Card.member_id == b_member))
        root_id = db.scalar(select(ConsoleUser.id).where(ConsoleUser.username == "root"))
        unknown_id = db.scalar(select(UnknownCard.id))
    values: dict[str, int | str] = {
        "session_id": branches.session_b,
        "member_id": b_member,
        "card_id": card_id or 0,
        "employee_no": "B001",
        "code": "B",
        "unit": "B",
        "quarter": "2025Q1",
        "leave_request_id": leave.request(uow, branches.session_b, "B001", "病假"),
        "enrol_request_id": enrol_id,
        "entry_id": ledger.adjust(uow, "B001", 5, "奖励", now=now, zone=zone).entry_id,
        "series_id": session_service.group_series(
            uow, "第二支部系列", [branches.session_b, branches.session_all]
        ),
        "user_id": root_id or 0,
        "unknown_id": unknown_id or 0,
    }
    org_admin = console.new_client()
    org_admin_csrf = sign_in(org_admin, "admin-a")
    org_admin_api = console.new_client()
    grant_api_token(org_admin_api, database, Role.ORG_ADMIN, org_unit_code="A")
    auditor = console.new_client()
    auditor_csrf = sign_in(auditor, "clerk")
    yield Site(
        console,
        branches,
        values,
        org_admin,
        org_admin_csrf,
        org_admin_api,
        auditor,
        auditor_csrf,
    )
    for client in (org_admin, org_admin_api, auditor):
        client.close()


def _fill(path: str, values: dict[str, int | str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        if name == "request_id":
            # Leave requests in the API, enrolments in the console.
            name = "leave_request_id" if path.startswith("/api/") else "enrol_request_id"
        if name in GLOBAL_PARAMS:
            return str(values.get(name, 1))
        assert name in values, f"{path}: say which of branch B's objects `{name}` names"
        return str(values[name])

    return re.sub(r"{([^}]+)}", value, path)


def _routes(site: Site) -> list[tuple[str, str]]:
    return [
        (method, path)
        for method, path in app_routes(site.console.app)
        if not PUBLIC.match(path) and path.startswith(("/admin", "/api/"))
    ]


def _leaks(text: str) -> list[str]:
    return [marker for marker in B_MARKERS if marker in text]


def _actor_changes(site: Site, actor: str) -> int:
    with site.console.database.sessions() as db:
        return db.scalar(select(func.count()).where(AuditEntry.actor == actor)) or 0


def test_an_org_admin_sees_its_own_branch(site: Site) -> None:
    a_member = site.branches.member_ids["A001"]
    assert site.org_admin.get(f"/admin/sessions/{site.branches.session_a}").status_code == 200
    assert site.org_admin.get(f"/admin/members/{a_member}").status_code == 200
    assert "张三明" in site.org_admin.get("/admin/members").text
    assert site.org_admin_api.get("/api/v1/members/A001").status_code == 200
    listed = site.org_admin_api.get("/api/v1/members").json()
    assert {m["employee_no"] for m in listed} == {"A001", "A002", "A003"}


def test_every_object_of_branch_b_answers_403_or_404(site: Site) -> None:
    failures: list[str] = []
    before = _actor_changes(site, "admin-a")
    for method, template in _routes(site):
        params = path_params(template)
        if not params or all(p in GLOBAL_PARAMS for p in params):
            continue
        path = _fill(template, site.values)
        api = path.startswith("/api/")
        client = site.org_admin_api if api else site.org_admin
        data = {"csrf_token": site.org_admin_csrf, "employee_no": "B001", "reason": "试探"}
        if method == "GET":
            response = client.get(path)
        elif api:
            response = client.request(method, path, json={"reason": "试探"})
        else:
            response = client.request(method, path, data=data)
        if response.status_code not in (403, 404):
            failures.append(f"{method} {template} -> {response.status_code}")
        elif leaked := _leaks(response.text):
            failures.append(f"{method} {template} refused but shows {leaked}")
    assert not failures, "\n".join(failures)
    assert _actor_changes(site, "admin-a") == before


def test_lists_and_forms_show_and_change_nothing_of_branch_b(site: Site) -> None:
    failures: list[str] = []
    before = _actor_changes(site, "admin-a")
    references = {
        "employee_no": "B001",
        "org_unit_code": "B",
        "parent_code": "B",
        "org_unit": "B",
        "org_unit_id": str(site.branches.branch_b_id),
        "org_unit_codes": "B",
        "session_ids": str(site.branches.session_b),
        "code": "B2X",
        "name": "越权测试",
        "title": "越权测试",
        "reason": "越权测试",
        "uid": "04BADBAD",
        "reader_id": site.branches.reader_id,
    }
    for method, path in _routes(site):
        if path_params(path):
            continue
        api = path.startswith("/api/")
        client = site.org_admin_api if api else site.org_admin
        if method == "GET":
            response = client.get(path)
            if response.status_code not in (200, 303, 403):
                failures.append(f"GET {path} -> {response.status_code}")
            elif leaked := _leaks(response.text):
                failures.append(f"GET {path} shows {leaked}")
            continue
        body: dict[str, Any] = {
            **references,
            "org_unit_codes": ["B"],
            "session_ids": [site.branches.session_b],
        }
        if api:
            response = client.request(method, path, json=body)
        else:
            response = client.request(
                method, path, data={**references, "csrf_token": site.org_admin_csrf}
            )
        if response.status_code >= 500:
            failures.append(f"{method} {path} -> {response.status_code}")
    assert not failures, "\n".join(failures)
    # Whatever those requests answered, none of them changed anything.
    assert _actor_changes(site, "admin-a") == before


def test_an_auditor_changes_nothing(site: Site) -> None:
    failures: list[str] = []
    a_values = {
        **site.values,
        "session_id": site.branches.session_a,
        "member_id": site.branches.member_ids["A001"],
        "employee_no": "A001",
        "code": "A",
    }
    for method, template in _routes(site):
        if method not in UNSAFE or template in READING_POSTS:
            continue
        path = _fill(template, a_values)
        if path.startswith("/api/"):
            response = site.auditor.request(
                method, path, json={}, headers={"X-CSRF-Token": site.auditor_csrf}
            )
        else:
            response = site.auditor.request(
                method, path, data={"csrf_token": site.auditor_csrf, "employee_no": "A001"}
            )
        if response.status_code != 403:
            failures.append(f"{method} {template} -> {response.status_code}")
    assert not failures, "\n".join(failures)
    assert _actor_changes(site, "clerk") == 0


def test_api_requests_need_a_principal_and_cookie_posts_need_the_csrf_token(site: Site) -> None:
    anonymous = site.console.new_client()
    assert anonymous.get("/api/v1/members").status_code == 401
    assert (
        anonymous.get("/api/v1/members", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    root = site.console.new_client()
    token = sign_in(root, "root", PASSWORD)
    # The console's cookie reads the API, but writes through it only with the CSRF token.
    assert root.get("/api/v1/members/B001").status_code == 200
    body = {"code": "NEW", "name": "新支部", "parent_code": "DW"}
    assert root.post("/api/v1/org-units", json=body).status_code == 403
    made = root.post("/api/v1/org-units", json=body, headers={"X-CSRF-Token": token})
    assert made.status_code == 201, made.text
    with site.console.database.sessions() as db:
        actor = db.scalar(select(AuditEntry.actor).order_by(AuditEntry.id.desc()).limit(1))
    assert actor == "root"
    anonymous.close()
    root.close()


def test_an_org_admin_cannot_give_a_card_to_branch_b(site: Site) -> None:
    unknown_id = site.values["unknown_id"]
    refused = site.org_admin.post(
        f"/admin/unknown-cards/{unknown_id}/bind",
        data={"employee_no": "B001", "csrf_token": site.org_admin_csrf},
    )
    assert refused.status_code == 404
    bound = site.org_admin.post(
        f"/admin/unknown-cards/{unknown_id}/bind",
        data={"employee_no": "A001", "csrf_token": site.org_admin_csrf},
        follow_redirects=False,
    )
    assert bound.status_code == 303


def test_the_session_list_offers_no_change_to_a_session_shared_with_another_branch(
    site: Site,
) -> None:
    """Listed, as its audience touches branch A, and readable; not changeable by A's admin."""
    database, now = site.console.database, site.console.clock.now()
    branches = site.branches
    planned: dict[str, int] = {}
    with database.write_sessions.begin() as db:
        activity_id = db.scalar(select(ActivityType.id))
        assert activity_id is not None
        for key, audience in (
            ("own", [branches.branch_a_id]),
            ("joint", [branches.branch_a_id, branches.branch_b_id]),
        ):
            meeting = AttendanceSession(
                title=f"计划中的{key}",
                activity_type_id=activity_id,
                starts_at=now + timedelta(days=2),
                ends_at=now + timedelta(days=2, hours=2),
                checkin_open_minutes=30,
                late_grace_minutes=5,
                allow_walk_in=False,
            )
            db.add(meeting)
            db.flush()
            db.add_all(SessionAudience(session_id=meeting.id, org_unit_id=u) for u in audience)
            planned[key] = meeting.id
    own, joint = planned["own"], planned["joint"]

    page = site.org_admin.get("/admin/sessions").text

    assert f'data-session="{joint}"' in page
    assert f"/admin/sessions/{own}/edit" in page
    assert f'name="session_ids" value="{own}"' in page
    assert f"/admin/sessions/{joint}/edit" not in page
    assert f'name="session_ids" value="{joint}"' not in page
    # Nor a series with a session beyond branch A (branch B's, made by the site fixture).
    assert "第二支部系列" not in page
    # What the list no longer offers stays refused; reading the session does not.
    assert site.org_admin.get(f"/admin/sessions/{joint}/edit").status_code == 404
    assert site.org_admin.get(f"/admin/sessions/{joint}").status_code == 200
    # The API draws the same line (one rule, auth_scope.owned_sessions): readable, not changeable.
    api = site.org_admin_api
    assert api.get(f"/api/v1/sessions/{joint}").status_code == 200
    refused = api.patch(f"/api/v1/sessions/{joint}", json={"title": "改名"})
    assert refused.status_code == 403, refused.text
    assert api.patch(f"/api/v1/sessions/{own}", json={"title": "改名"}).status_code == 200
