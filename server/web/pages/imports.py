"""Console page: import org units, members and cards from CSV or XLSX (dry run, then confirm).

An upload is checked at once (a dry run: nothing changes) and kept in memory as
a job of the user who uploaded it. Confirming applies it in a background thread,
all or nothing; the page polls the job's progress with HTMX until it is done.
"""

import logging
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Annotated, Final

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from server.api.deps import RuntimeDep, UowDep
from server.errors import NotFound, RollcallError
from server.runtime import ServerRuntime
from server.services import imports
from server.services.auth import Principal
from server.services.imports import ImportKind, ImportReport, SourceRow
from server.services.unit_of_work import UnitOfWork
from server.web.auth import PrincipalDep, WriterDep, web_settings
from server.web.i18n import language_of
from server.web.rendering import render

router = APIRouter(prefix="/admin/imports", include_in_schema=False)
log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES: Final = 20 * 1024 * 1024
KEPT_JOBS: Final = 20


@dataclass
class ImportJob:
    """An uploaded file: checked, then (once confirmed) being applied or done."""

    job_id: str
    user_id: int
    kind: ImportKind
    filename: str
    rows: list[SourceRow]
    report: ImportReport
    state: str = "checked"  # checked → running → done | failed
    done: int = 0
    total: int = 0
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def percent(self) -> int:
        """How far applying has got, 0–100."""
        if self.state == "done":
            return 100
        return int(100 * self.done / self.total) if self.total else 0


class ImportJobs:
    """The latest jobs of this server process, oldest dropped first."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, ImportJob] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, job: ImportJob) -> None:
        """Keep a job, forgetting the oldest beyond KEPT_JOBS."""
        with self._lock:
            self._jobs[job.job_id] = job
            while len(self._jobs) > KEPT_JOBS:
                self._jobs.popitem(last=False)

    def get(self, job_id: str, principal: Principal) -> ImportJob:
        """A job of this user; NotFound for anyone else's."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.user_id != principal.user_id:
            raise NotFound("import", job_id)
        return job


def _jobs(request: Request) -> ImportJobs:
    state = request.app.state
    jobs = getattr(state, "import_jobs", None)
    if not isinstance(jobs, ImportJobs):
        jobs = ImportJobs()
        state.import_jobs = jobs
    return jobs


def _form(request: Request, *, error: str | None = None) -> HTMLResponse:
    """The upload form, with why the last file was refused (shown on the form, not a 4xx page)."""
    return render(request, "imports/form.html", {"kinds": list(ImportKind), "error": error})


@router.get("", response_class=HTMLResponse)
def import_page(request: Request, principal: PrincipalDep) -> HTMLResponse:
    """The upload form and the columns each kind of file needs."""
    return _form(request)


@router.post("", response_class=HTMLResponse)
async def upload(
    request: Request,
    *,
    principal: WriterDep,
    runtime: RuntimeDep,
    uow: UowDep,
    kind: Annotated[ImportKind, Form()],
    file: Annotated[UploadFile, File()],
) -> HTMLResponse:
    """Check an uploaded file row by row (a dry run) and show what importing it would do."""
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        return _form(request, error="too_large")
    filename = (file.filename or "upload")[:200]
    try:
        # Parsing and checking 10,000 rows takes a while: off the event loop.
        rows = await run_in_threadpool(imports.read_rows, data, filename, kind)
    except imports.BadImportFile as exc:
        return _form(request, error=str(exc))
    report = await run_in_threadpool(
        imports.dry_run,
        uow,
        kind,
        rows,
        scope=principal.scope_unit_ids,
        now=runtime.clock.now(),
        zone=web_settings(request).zone,
    )
    job = ImportJob(secrets.token_urlsafe(12), principal.user_id, kind, filename, rows, report)
    _jobs(request).add(job)
    return render(request, "imports/checked.html", _context(request, job))


def _context(request: Request, job: ImportJob) -> dict[str, object]:
    language = "en" if language_of(request) == "en" else "zh"
    return {
        "job": job,
        "report": job.report,
        "problems": [(p.line, p.column, p.text(language)) for p in job.report.problems],
    }


def _apply(job: ImportJob, runtime: ServerRuntime, principal: Principal, zone: tzinfo) -> None:
    """Apply a confirmed job; runs in its own thread."""

    def progress(done: int, total: int) -> None:
        job.done, job.total = done, total

    try:
        report = imports.apply(
            UnitOfWork(runtime.database.write_sessions),
            job.kind,
            job.rows,
            actor=principal.username,
            source=job.filename,
            scope=principal.scope_unit_ids,
            now=runtime.clock.now(),
            zone=zone,
            progress=progress,
        )
    except RollcallError as exc:
        job.error, job.state = str(exc), "failed"
        return
    except Exception as exc:  # a database failure must still end the job the page polls
        log.exception("import %s of %s failed", job.job_id, job.filename)
        job.error, job.state = type(exc).__name__, "failed"
        return
    job.report = report
    job.state = "done"


@router.post("/{job_id}/confirm", response_class=HTMLResponse)
def confirm(
    request: Request, job_id: str, principal: WriterDep, runtime: RuntimeDep
) -> HTMLResponse:
    """Apply a checked file in the background; the page then follows its progress."""
    job = _jobs(request).get(job_id, principal)
    with job.lock:
        if job.state == "checked" and job.report.ok:
            job.state = "running"
            job.total = job.report.created + job.report.updated
            thread = threading.Thread(
                target=_apply,
                args=(job, runtime, principal, web_settings(request).zone),
                name=f"import-{job.job_id}",
                daemon=True,
            )
            thread.start()
    return render(request, "imports/progress.html", _context(request, job))


@router.get("/{job_id}/progress", response_class=HTMLResponse)
def progress(request: Request, job_id: str, principal: PrincipalDep) -> HTMLResponse:
    """The progress fragment HTMX polls; it stops polling once the job has ended."""
    job = _jobs(request).get(job_id, principal)
    return render(request, "imports/_progress.html", _context(request, job))
