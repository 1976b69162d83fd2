"""Rankings, monthly star, branch benchmarks and quarterly publications per org unit."""

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from server.api.deps import RuntimeDep, SessionDep, UowDep
from server.api.errors import NOT_FOUND, WRITE
from server.api.schemas import (
    BenchmarkOut,
    Day,
    PublicationOut,
    RankedMemberOut,
    StarMemberOut,
    StarOut,
)
from server.services import rankings

router = APIRouter(prefix="/org-units", tags=["rankings"])
Code = Annotated[str, Path(min_length=1, max_length=32)]
Quarter = Annotated[str, Path(pattern=r"^(19[7-9]\d|2[01]\d\d)[Qq][1-4]$", examples=["2026Q1"])]


@router.get("/{code}/rankings", response_model=list[RankedMemberOut], responses=WRITE)
def member_ranking(
    code: Code,
    db: SessionDep,
    runtime: RuntimeDep,
    start: Annotated[Day, Query(description="first local day")],
    end: Annotated[Day, Query(description="day after the last")],
) -> list[RankedMemberOut]:
    """Members of the unit and its sub-units by points in [start, end)."""
    period = rankings.Period(start, end)
    found = rankings.member_ranking(db.connection(), code, period, runtime.settings.zone)
    return [RankedMemberOut.model_validate(r) for r in found]


@router.get("/{code}/monthly-star", response_model=StarOut, responses=WRITE)
def monthly_star(
    code: Code,
    db: SessionDep,
    runtime: RuntimeDep,
    year: Annotated[int, Query(ge=2000, le=2100)],
    month: Annotated[int, Query(ge=1, le=12)],
) -> StarOut:
    """The branch's star of the month, with the tie-breaks that decide equal points."""
    star, tie_breaks = rankings.monthly_star(
        db.connection(), code, rankings.Period.month(year, month), runtime.settings.zone
    )
    return StarOut(
        star=None if star is None else StarMemberOut.model_validate(star),
        tie_breaks=list(tie_breaks),
    )


@router.get("/{code}/benchmarks", response_model=list[BenchmarkOut], responses=WRITE)
def branch_benchmarks(
    code: Code,
    db: SessionDep,
    runtime: RuntimeDep,
    start: Annotated[Day, Query()],
    end: Annotated[Day, Query()],
) -> list[BenchmarkOut]:
    """The unit's direct sub-units compared on expected-attendance rate and points per member."""
    found = rankings.benchmarks(
        db.connection(), code, rankings.Period(start, end), runtime.settings.zone
    )
    return [
        BenchmarkOut(
            code=b.code,
            name=b.name,
            **{k: v for k, v in asdict(b.benchmark).items() if k != "org_unit_id"},
        )
        for b in found
    ]


@router.post(
    "/{code}/publications/{quarter}",
    response_model=PublicationOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
)
def publish_quarter(
    code: Code, quarter: Quarter, uow: UowDep, runtime: RuntimeDep
) -> PublicationOut:
    """Freeze the quarter's figures; later corrections show as adjustments."""
    now = runtime.clock.now()
    figures = rankings.publish(uow, code, quarter, now, runtime.settings.zone)
    return PublicationOut(period=quarter.upper(), published_at=now, figures=figures, adjustments=[])


@router.get("/{code}/publications/{quarter}", response_model=PublicationOut, responses=NOT_FOUND)
def get_publication(
    code: Code, quarter: Quarter, db: SessionDep, runtime: RuntimeDep
) -> PublicationOut:
    """A quarter's frozen figures, and corrections since as adjustments."""
    found = rankings.publication(db.connection(), code, quarter, runtime.settings.zone)
    return PublicationOut.model_validate(found)
