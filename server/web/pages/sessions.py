"""Console page: the session list, planning sessions (with recurrence presets) and series.

The review of one session (`/admin/sessions/{id}`) is another page's. An org
admin lists the sessions held for their subtree, and plans, edits or groups
only sessions whose whole audience lies inside it; anything else answers 404.
"""

from datetime import date, datetime, time, timedelta, tzinfo
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.deps import RuntimeDep, SessionDep, UowDep
from server.db.models import Member
from server.domain.lifecycle import SessionStatus
from server.errors import DomainError, NotFound
from server.services import organisation
from server.services import sessions as session_service
from server.services.auth import Principal
from server.services.auth_scope import owned_sessions
from server.web.auth import PrincipalDep, WriterDep, web_settings
from server.web.pages.org import default_unit, scoped_units, unit_in_scope
from server.web.rendering import redirect, render

router = APIRouter(prefix="/admin/sessions", include_in_schema=False)

PAGE_SIZE: Final = 50
# RFC 5545 rules people pick by name; "custom" takes the rule as typed.
RECURRENCE_PRESETS: Final = {
    "weekly": "FREQ=WEEKLY",
    "biweekly": "FREQ=WEEKLY;INTERVAL=2",
    "monthly_first_fri": "FREQ=MONTHLY;BYDAY=1FR",
    "monthly_last_fri": "FREQ=MONTHLY;BYDAY=-1FR",
    "monthly_same_day": "FREQ=MONTHLY",
    "quarterly": "FREQ=MONTHLY;INTERVAL=3",
}


def check_session_scope(db: Session, principal: Principal, session_id: int) -> None:
    """NotFound unless the session's whole audience lies in the principal's scope."""
    owned = owned_sessions(db.connection(), principal, [session_id])
    if owned is not None and session_id not in owned:
        raise NotFound("session", session_id)


def _visible_series(
    db: Session, principal: Principal, found: list[session_service.SeriesView]
) -> list[session_service.SeriesView]:
    """The series whose every session the principal may change (check_session_scope's rule)."""
    changeable = owned_sessions(
        db.connection(), principal, [i for series in found for i in series.session_ids]
    )
    if changeable is None:
        return found
    return [series for series in found if set(series.session_ids) <= changeable]


def _session_of_path(session_id: int, principal: PrincipalDep, db: SessionDep) -> int:
    """The session a path's {session_id} names, if in scope; checked before any form is read."""
    check_session_scope(db, principal, session_id)
    return session_id


ScopedSessionDep = Annotated[int, Depends(_session_of_path)]


def _codes_in_scope(db: Session, principal: Principal, codes: list[str]) -> list[str]:
    return [unit_in_scope(db, principal, code).code for code in codes if code]


def _members_in_scope(db: Session, principal: Principal, numbers: list[str]) -> list[str]:
    found = dict(
        db.execute(
            select(Member.employee_no, Member.org_unit_id).where(Member.employee_no.in_(numbers))
        ).all()
    )
    for number in numbers:
        if number not in found or not principal.allows_unit(found[number]):
            raise NotFound("member with employee number", number)
    return numbers


def _local(day: date, at: time, zone: tzinfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone)


def _employee_numbers(text: str) -> list[str]:
    return [n for n in text.replace("，", ",").replace("\n", ",").split(",") if n.strip()]


@router.get("", response_class=HTMLResponse)
def sessions_page(
    request: Request,
    *,
    principal: PrincipalDep,
    db: SessionDep,
    runtime: RuntimeDep,
    unit: str | None = None,
    status: str | None = None,
    start: date | None = None,
    end: date | None = None,
    offset: int = 0,
) -> HTMLResponse:
    """Sessions by start day, audience unit and status; planned ones can be edited."""
    zone = web_settings(request).zone
    now = runtime.clock.now()
    chosen = (
        unit_in_scope(db, principal, unit)
        if unit
        else None
        if principal.scope_unit_ids is None
        else default_unit(db, principal)
    )
    wanted = session_service.SessionFilter(
        start=start,
        end=end,
        org_unit_code=None if chosen is None else chosen.code,
        status=SessionStatus(status) if status else None,
    )
    if principal.scope_unit_ids is not None and chosen is None:
        found = session_service.SessionPage(0, [])
    else:
        found = session_service.list_sessions(
            db, wanted, now, zone, limit=PAGE_SIZE, offset=max(offset, 0)
        )
    return render(
        request,
        "sessions/list.html",
        {
            "page": found,
            # Shown, but not offered for editing: sessions shared with another branch.
            "changeable": owned_sessions(
                db.connection(), principal, [item.id for item in found.items]
            ),
            "units": scoped_units(db, principal),
            "unit": chosen,
            "status": status or "",
            "statuses": list(SessionStatus),
            "start": start,
            "end": end,
            "offset": max(offset, 0),
            "page_size": PAGE_SIZE,
            "series": _visible_series(db, principal, session_service.series_list(db, limit=20)),
        },
    )


def _form_context(db: Session, principal: Principal) -> dict[str, object]:
    return {
        "units": scoped_units(db, principal),
        "rooms": organisation.rooms(db),
        "activity_types": organisation.activity_types(db),
        "presets": RECURRENCE_PRESETS,
    }


@router.get("/new", response_class=HTMLResponse)
def new_session_page(
    request: Request, principal: WriterDep, db: SessionDep, runtime: RuntimeDep
) -> HTMLResponse:
    """The form to plan a session, once or recurring."""
    today = runtime.clock.now().astimezone(web_settings(request).zone).date()
    return render(
        request,
        "sessions/new.html",
        {**_form_context(db, principal), "day": today + timedelta(days=1)},
    )


@router.post("/new")
def plan(
    request: Request,
    *,
    principal: WriterDep,
    db: SessionDep,
    uow: UowDep,
    title: Annotated[str, Form()],
    activity_type: Annotated[str, Form()],
    day: Annotated[date, Form()],
    start_time: Annotated[time, Form()],
    end_time: Annotated[time, Form()],
    rooms: Annotated[list[str] | None, Form()] = None,
    units: Annotated[list[str] | None, Form()] = None,
    members: Annotated[str, Form()] = "",
    checkin_open_minutes: Annotated[int, Form()] = 30,
    late_grace_minutes: Annotated[int, Form()] = 5,
    allow_walk_in: Annotated[bool, Form()] = False,
    requires_checkout: Annotated[bool, Form()] = False,
    min_stay_minutes: Annotated[int, Form()] = 0,
    recurrence: Annotated[str, Form()] = "",
    custom_rule: Annotated[str, Form()] = "",
    occurrences: Annotated[int | None, Form()] = None,
    until: Annotated[date | None, Form()] = None,
    series_title: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Plan one session, or one per occurrence of the chosen recurrence (optionally a series)."""
    zone = web_settings(request).zone
    unit_codes = _codes_in_scope(db, principal, units or [])
    numbers = _members_in_scope(db, principal, _employee_numbers(members))
    if principal.scope_unit_ids is not None and not unit_codes and not numbers:
        raise DomainError("an org admin's session needs an audience: pick units or members")
    rule = custom_rule.strip() if recurrence == "custom" else RECURRENCE_PRESETS.get(recurrence)
    if rule and occurrences:
        rule = f"{rule};COUNT={occurrences}"
    elif rule and until is None:
        raise DomainError("a recurring session needs a number of occurrences or a last day")
    db.close()
    ids = session_service.plan_sessions(
        uow,
        session_service.SessionPlan(
            title=title,
            activity_type_code=activity_type,
            starts_at=_local(day, start_time, zone),
            ends_at=_local(day, end_time, zone),
            room_codes=rooms or [],
            org_unit_codes=unit_codes,
            employee_nos=numbers,
            checkin_open_minutes=checkin_open_minutes,
            late_grace_minutes=late_grace_minutes,
            allow_walk_in=allow_walk_in,
            requires_checkout=requires_checkout,
            min_stay_minutes=min_stay_minutes,
            recurrence_rule=rule or None,
            recurrence_until=None
            if until is None or not rule
            else _local(until, time(23, 59, 59), zone),
            series_title=series_title.strip() or None,
        ),
        zone,
        actor=principal.username,
    )
    return redirect(f"/admin/sessions?done=planned&count={len(ids)}")


@router.get("/{session_id}/edit", response_class=HTMLResponse)
def edit_page(
    request: Request,
    principal: WriterDep,
    session_id: ScopedSessionDep,
    db: SessionDep,
    runtime: RuntimeDep,
) -> HTMLResponse:
    """A planned session's settings, to change before its check-in opens."""
    detail = session_service.session_detail(db, session_id, runtime.clock.now())
    return render(
        request, "sessions/edit.html", {**_form_context(db, principal), "session": detail}
    )


@router.post("/{session_id}/edit")
def edit(
    request: Request,
    *,
    principal: WriterDep,
    session_id: ScopedSessionDep,
    db: SessionDep,
    uow: UowDep,
    runtime: RuntimeDep,
    title: Annotated[str, Form()],
    day: Annotated[date, Form()],
    start_time: Annotated[time, Form()],
    end_time: Annotated[time, Form()],
    rooms: Annotated[list[str] | None, Form()] = None,
    units: Annotated[list[str] | None, Form()] = None,
    members: Annotated[str, Form()] = "",
    checkin_open_minutes: Annotated[int, Form()] = 30,
    late_grace_minutes: Annotated[int, Form()] = 5,
    allow_walk_in: Annotated[bool, Form()] = False,
) -> RedirectResponse:
    """Change a planned session: times, rooms, audience, check-in settings."""
    zone = web_settings(request).zone
    unit_codes = _codes_in_scope(db, principal, units or [])
    numbers = _members_in_scope(db, principal, _employee_numbers(members))
    if principal.scope_unit_ids is not None and not unit_codes and not numbers:
        raise DomainError("an org admin's session needs an audience: pick units or members")
    db.close()
    session_service.edit_session(
        uow,
        session_id,
        session_service.SessionChanges(
            title=title,
            starts_at=_local(day, start_time, zone),
            ends_at=_local(day, end_time, zone),
            checkin_open_minutes=checkin_open_minutes,
            late_grace_minutes=late_grace_minutes,
            allow_walk_in=allow_walk_in,
            room_codes=rooms or [],
            org_unit_codes=unit_codes,
            employee_nos=numbers,
        ),
        runtime.clock.now(),
        actor=principal.username,
    )
    return redirect("/admin/sessions?done=edited")


@router.post("/series")
def make_series(
    *,
    principal: WriterDep,
    db: SessionDep,
    uow: UowDep,
    title: Annotated[str, Form()],
    session_ids: Annotated[list[int] | None, Form()] = None,
) -> RedirectResponse:
    """Group sessions into a series: attending any one fulfils it (make-up sessions)."""
    chosen = session_ids or []
    for session_id in chosen:
        check_session_scope(db, principal, session_id)
    db.close()
    session_service.group_series(uow, title, chosen, actor=principal.username)
    return redirect("/admin/sessions?done=series")


@router.post("/{session_id}/cancel")
def cancel(
    *,
    principal: WriterDep,
    session_id: ScopedSessionDep,
    uow: UowDep,
    runtime: RuntimeDep,
    reason: Annotated[str, Form()],
) -> RedirectResponse:
    """Cancel a session with a reason; it takes no taps and is never scored."""
    session_service.cancel(uow, session_id, reason, runtime.clock.now(), actor=principal.username)
    return redirect("/admin/sessions?done=cancelled")
