"""Console page: member rankings, the monthly star and branch benchmarks, with ECharts charts.

The charts read `/admin/rankings/data.json`, held to the same scope as the
page: an org unit outside the principal's subtree answers 404.
"""

import re
from dataclasses import asdict
from datetime import date, tzinfo
from typing import Annotated, Any, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from server.api.deps import RuntimeDep, SessionDep, UowDep
from server.db.models import Publication
from server.domain.rankings import STAR_TIE_BREAKS
from server.errors import DomainError
from server.services import rankings
from server.services.auth import Principal
from server.services.rankings import Period
from server.web.auth import PrincipalDep, WriterDep, web_settings
from server.web.pages.org import UnitRow, default_unit, scoped_units, unit_in_scope
from server.web.rendering import redirect, render

router = APIRouter(prefix="/admin/rankings", include_in_schema=False)

TREND_MONTHS: Final = 6
PUBLISHABLE_QUARTERS: Final = 4
SHOWN_MEMBERS: Final = 200


def _month(text: str | None, today: date) -> Period:
    if not text:
        return Period.month(today.year, today.month)
    match = re.fullmatch(r"(\d{4})-(\d{1,2})", text.strip())
    if match is None:
        raise DomainError(f"a month is written like 2026-03, not {text!r}")
    return Period.month(int(match[1]), int(match[2]))


def _months_back(period: Period, count: int) -> list[Period]:
    """`count` months ending with `period`'s, oldest first."""
    year, month = period.start.year, period.start.month
    found = []
    for _ in range(count):
        found.append(Period.month(year, month))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return found[::-1]


def _ended_quarters(today: date, count: int) -> list[str]:
    """The `count` latest quarters that have ended by `today`, newest first (2026Q1 …)."""
    year, quarter = today.year, (today.month - 1) // 3 + 1
    found = []
    for _ in range(count):
        year, quarter = (year - 1, 4) if quarter == 1 else (year, quarter - 1)
        found.append(f"{year}Q{quarter}")
    return found


def _unit(db: Session, principal: Principal, code: str | None) -> UnitRow | None:
    return default_unit(db, principal) if not code else unit_in_scope(db, principal, code)


@router.get("", response_class=HTMLResponse)
def rankings_page(
    request: Request,
    *,
    principal: PrincipalDep,
    db: SessionDep,
    runtime: RuntimeDep,
    unit: str | None = None,
    month: str | None = None,
) -> HTMLResponse:
    """One unit's member ranking, star and branch benchmark for a month."""
    zone = web_settings(request).zone
    period = _month(month, runtime.clock.now().astimezone(zone).date())
    chosen = _unit(db, principal, unit)
    context: dict[str, Any] = {
        "units": scoped_units(db, principal),
        "unit": chosen,
        "month": f"{period.start:%Y-%m}",
        "ranking": [],
        "star": None,
        "tie_breaks": STAR_TIE_BREAKS,
        "branches": [],
    }
    if chosen is not None:
        connection = db.connection()
        ranking = rankings.member_ranking(connection, chosen.code, period, zone)
        star, tie_breaks = rankings.monthly_star(connection, chosen.code, period, zone)
        published = dict(
            db.execute(
                select(Publication.period, Publication.published_at)
                .where(Publication.org_unit_id == chosen.id)
                .order_by(Publication.period.desc())
            ).all()
        )
        today = runtime.clock.now().astimezone(zone).date()
        branches = rankings.benchmarks(connection, chosen.code, period, zone)
        context.update(
            ranking=ranking[:SHOWN_MEMBERS],
            ranked=len(ranking),
            star=star,
            tie_breaks=tie_breaks,
            branches=branches,
            # Each branch picks its own star of the month.
            branch_stars=[
                (b, rankings.monthly_star(connection, b.code, period, zone)[0])
                for b in sorted(branches, key=lambda b: b.code)
            ],
            publications=published,
            quarters=[
                q for q in _ended_quarters(today, PUBLISHABLE_QUARTERS) if q not in published
            ],
        )
    return render(request, "rankings/index.html", context)


def chart_data(db: Session, unit_code: str, period: Period, zone: tzinfo) -> dict[str, Any]:
    """The figures behind the charts: a unit's monthly trend and its branches side by side."""
    connection = db.connection()
    trend = []
    for month in _months_back(period, TREND_MONTHS):
        record = rankings.unit_record(connection, unit_code, month, zone)
        trend.append(
            {
                "month": f"{month.start:%Y-%m}",
                "attendance_rate": round(record.attended / record.expected, 4)
                if record.expected
                else None,
                "points_per_member": round(record.points / record.members, 2)
                if record.members
                else 0,
            }
        )
    branches = [
        {"code": b.code, "name": b.name, **asdict(b.benchmark)}
        for b in rankings.benchmarks(connection, unit_code, period, zone)
    ]
    for branch in branches:
        branch.pop("org_unit_id", None)  # ids stay inside; codes name units outside
    return {
        "unit": unit_code,
        "month": f"{period.start:%Y-%m}",
        "trend": trend,
        "branches": branches,
    }


@router.get("/data.json")
async def rankings_data(
    request: Request,
    *,
    principal: PrincipalDep,
    db: SessionDep,
    runtime: RuntimeDep,
    unit: str | None = None,
    month: str | None = None,
) -> JSONResponse:
    """Chart data for one unit and month, scoped like the page."""
    zone = web_settings(request).zone
    period = _month(month, runtime.clock.now().astimezone(zone).date())
    chosen = _unit(db, principal, unit)
    if chosen is None:
        return JSONResponse({"unit": None, "trend": [], "branches": []})
    data = await run_in_threadpool(chart_data, db, chosen.code, period, zone)
    return JSONResponse(data)


@router.post("/publish")
def publish(
    *,
    principal: WriterDep,
    db: SessionDep,
    uow: UowDep,
    runtime: RuntimeDep,
    request: Request,
    unit: Annotated[str, Form()],
    quarter: Annotated[str, Form()],
) -> RedirectResponse:
    """Freeze a unit's figures for an ended quarter; later corrections show as adjustments."""
    chosen = unit_in_scope(db, principal, unit)
    db.close()
    rankings.publish(
        uow,
        chosen.code,
        quarter,
        runtime.clock.now(),
        web_settings(request).zone,
        actor=principal.username,
    )
    return redirect(f"/admin/rankings/publications/{chosen.code}/{quarter.upper()}")


@router.get("/publications/{unit}/{quarter}", response_class=HTMLResponse)
def publication_page(
    request: Request, unit: str, quarter: str, principal: PrincipalDep, db: SessionDep
) -> HTMLResponse:
    """A publication as frozen, and the corrections made to members' points since."""
    chosen = unit_in_scope(db, principal, unit)
    published = rankings.publication(
        db.connection(), chosen.code, quarter, web_settings(request).zone
    )
    return render(request, "rankings/publication.html", {"unit": chosen, "publication": published})
