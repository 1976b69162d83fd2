"""Console page: export attendance, points and rankings as CSV or XLSX; every export is audited."""

from datetime import date
from typing import Final
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from server.api.deps import RuntimeDep, SessionDep, UowDep
from server.db.models import AuditEntry
from server.errors import DomainError
from server.services import exports
from server.services.exports import ExportFormat, ExportKind, ExportRequest
from server.web.auth import PrincipalDep, web_settings
from server.web.pages.org import scoped_units
from server.web.rendering import redirect, render

router = APIRouter(prefix="/admin/exports", include_in_schema=False)

RECENT: Final = 10


@router.get("", response_class=HTMLResponse)
def export_page(
    request: Request, principal: PrincipalDep, db: SessionDep, runtime: RuntimeDep
) -> HTMLResponse:
    """The export form, and this user's latest exports."""
    today = runtime.clock.now().astimezone(web_settings(request).zone).date()
    recent = db.execute(
        select(AuditEntry.at, AuditEntry.action, AuditEntry.target, AuditEntry.details)
        .where(AuditEntry.actor == principal.username, AuditEntry.action.like("export.%"))
        .order_by(AuditEntry.id.desc())
        .limit(RECENT)
    ).all()
    return render(
        request,
        "exports/form.html",
        {
            "kinds": list(ExportKind),
            "formats": list(ExportFormat),
            "units": scoped_units(db, principal),
            "first_day": today.replace(day=1),
            "last_day": today,
            "recent": recent,
        },
    )


@router.get("/download", response_model=None)
async def download(
    request: Request,
    *,
    principal: PrincipalDep,
    uow: UowDep,
    runtime: RuntimeDep,
    kind: str | None = None,
    first_day: date | None = None,
    last_day: date | None = None,
    file_format: str = ExportFormat.XLSX.value,
    org_unit: str = "",
) -> Response:
    """Build the export and send it as a download; the audit log records it first.

    A GET, since it changes nothing people see (auditors export too); without
    the form's fields it goes back to the form.
    """
    if not kind or first_day is None or last_day is None:
        return redirect("/admin/exports")
    try:
        wanted = ExportRequest(
            ExportKind(kind),
            first_day,
            last_day,
            org_unit.strip() or None,
            ExportFormat(file_format),
        )
    except ValueError as exc:
        raise DomainError(f"unknown export kind or format: {exc}") from exc
    made = await run_in_threadpool(
        exports.export,
        uow,
        wanted,
        actor=principal.username,
        scope=principal.scope_unit_ids,
        now=runtime.clock.now(),
        zone=web_settings(request).zone,
    )
    return Response(
        made.content,
        media_type=made.media_type,
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(made.filename)}",
            "Cache-Control": "no-store",
        },
    )
