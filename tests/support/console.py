"""Console helpers for tests: make a user, sign in with httpx or in a Playwright page."""

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

import httpx

from protocol import CardTech, TapMode
from server.db.engine import Database
from server.db.models import (
    ActivityType,
    AttendanceSession,
    Card,
    Member,
    MemberOrgHistory,
    OrgUnit,
    PointsRuleVersion,
    Reader,
    Room,
    SessionAudience,
    SessionRoom,
    UnknownCard,
)
from server.services.auth import Role, create_api_token
from server.services.unit_of_work import UnitOfWork
from server.services.users import UserView, create_user

PASSWORD: Final = "correct horse battery"
_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_user(
    database: Database,
    username: str,
    role: Role | str = Role.SUPER_ADMIN,
    *,
    org_unit_id: int | None = None,
    password: str = PASSWORD,
) -> UserView:
    """Create a console user straight in the database."""
    return create_user(
        UnitOfWork(database.write_sessions),
        username=username,
        password=password,
        role=role,
        org_unit_id=org_unit_id,
    )


def csrf_token(html: str) -> str:
    """The CSRF token a rendered page's forms carry."""
    found = _CSRF_FIELD.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(client: httpx.Client, username: str, password: str = PASSWORD) -> str:
    """Sign in through the form as a browser would; return the session's CSRF token."""
    form = client.get("/admin/login")
    response = client.post(
        "/admin/login",
        data={"username": username, "password": password, "csrf_token": csrf_token(form.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    home = client.get("/admin/")
    assert home.status_code == 200, home.text
    return csrf_token(home.text)


def sign_in_page(page: Any, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Sign in a Playwright page through the form; it ends on the Today page."""
    page.goto(f"{base_url}/admin/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r".*/admin/$"))


def app_routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) the app serves through routers, nested includes flattened."""
    found: list[tuple[str, str]] = []

    def walk(routes: Any, prefix: str) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                context = getattr(route, "include_context", None)
                walk(inner.routes, prefix + (getattr(context, "prefix", "") or ""))
            elif hasattr(route, "methods") and hasattr(route, "endpoint"):
                for method in sorted(route.methods or ()):
                    if method != "HEAD":
                        found.append((method, prefix + route.path))

    walk(app.routes, "")
    return sorted(set(found))


def path_params(path: str) -> list[str]:
    """The names of a route path's parameters: /admin/sessions/{session_id:int} → [session_id]."""
    return [name.split(":")[0] for name in re.findall(r"{([^}]+)}", path)]


@dataclass(frozen=True)
class Branches:
    """Two branches under one committee, each with members, cards and its own session."""

    committee_id: int
    branch_a_id: int
    branch_b_id: int
    members_a: tuple[str, ...]  # employee numbers
    members_b: tuple[str, ...]
    member_ids: dict[str, int]
    session_a: int
    session_b: int
    session_all: int
    reader_id: str
    unknown_uid: str


def seed_branches(database: Database, now: datetime) -> Branches:
    """Committee DW with branches A and B, three members each, sessions for A, B and everyone."""
    with database.write_sessions.begin() as db:
        committee = OrgUnit(code="DW", name="公司党委")
        db.add(committee)
        db.flush()
        branch_a = OrgUnit(code="A", name="第一支部", parent_id=committee.id)
        branch_b = OrgUnit(code="B", name="第二支部", parent_id=committee.id)
        db.add_all([branch_a, branch_b])
        db.flush()
        names = {"A": ("张三明", "李四", "王五"), "B": ("赵六", "钱七", "孙八")}
        member_ids: dict[str, int] = {}
        for code, unit in (("A", branch_a), ("B", branch_b)):
            for index, name in enumerate(names[code], start=1):
                employee_no = f"{code}{index:03d}"
                member = Member(
                    employee_no=employee_no, name=name, org_unit_id=unit.id, category="正式党员"
                )
                db.add(member)
                db.flush()
                member_ids[employee_no] = member.id
                db.add(
                    MemberOrgHistory(
                        member_id=member.id,
                        org_unit_id=unit.id,
                        valid_from=now - timedelta(days=365),
                    )
                )
                db.add(
                    Card(
                        tech=CardTech.ISO14443A.value,
                        uid=f"04{code}0{index:06X}",
                        member_id=member.id,
                        status="active",
                    )
                )
        # Absence costs points from 2000 on, so a leave after closing shows in the ledger.
        db.add(
            PointsRuleVersion(
                version="test-absence",
                effective_from=date(2000, 1, 1),
                body={
                    "activities": {
                        "meeting": {"category": "general", "present": 3, "late": 2, "absent": -2}
                    }
                },
            )
        )
        room = Room(code="R1", name="党员活动室")
        activity = ActivityType(code="meeting", name="支部党员大会", default_points=3)
        db.add_all([room, activity])
        db.flush()
        db.add(Reader(reader_id="hall-1", room_id=room.id, mode=TapMode.CHECKIN.value))
        sessions = {}
        for key, title, audience in (
            ("A", "第一支部党员大会", branch_a.id),
            ("B", "第二支部党员大会", branch_b.id),
            ("all", "全体党课", None),
        ):
            meeting = AttendanceSession(
                title=title,
                activity_type_id=activity.id,
                starts_at=now,
                ends_at=now + timedelta(hours=2),
                checkin_open_minutes=30,
                late_grace_minutes=5,
                allow_walk_in=False,
            )
            db.add(meeting)
            db.flush()
            db.add(SessionRoom(session_id=meeting.id, room_id=room.id))
            if audience is not None:
                db.add(SessionAudience(session_id=meeting.id, org_unit_id=audience))
            sessions[key] = meeting.id
        db.add(
            UnknownCard(
                tech=CardTech.ISO14443A.value,
                uid="04FFEE0011",
                first_seen_at=now,
                last_seen_at=now,
                tap_count=1,
                last_reader_id="hall-1",
                last_mode=TapMode.CHECKIN.value,
            )
        )
        return Branches(
            committee_id=committee.id,
            branch_a_id=branch_a.id,
            branch_b_id=branch_b.id,
            members_a=tuple(e for e in member_ids if e.startswith("A")),
            members_b=tuple(e for e in member_ids if e.startswith("B")),
            member_ids=member_ids,
            session_a=sessions["A"],
            session_b=sessions["B"],
            session_all=sessions["all"],
            reader_id="hall-1",
            unknown_uid="04FFEE0011",
        )


def grant_api_token(
    client: httpx.Client,
    database: Database,
    role: Role = Role.SUPER_ADMIN,
    *,
    org_unit_code: str | None = None,
) -> str:
    """Make an API token and have the client send it as its bearer token; the secret."""
    made = create_api_token(
        UnitOfWork(database.write_sessions),
        name=f"tests-{role.value}",
        role=role,
        org_unit_code=org_unit_code,
    )
    client.headers["Authorization"] = f"Bearer {made.secret}"
    return made.secret
