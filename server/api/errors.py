"""Exception handlers: the only place HTTP status codes are chosen."""

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError

from server.api.schemas import ErrorOut, HealthOut
from server.errors import Conflict, DomainError, NotFound, NotReady, StorageError, Unhealthy

log = logging.getLogger(__name__)

# For route decorators, so the OpenAPI schema documents the error responses.
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"model": ErrorOut, "description": "No such record"}
}
BAD_INPUT: dict[int | str, dict[str, Any]] = {
    status.HTTP_422_UNPROCESSABLE_CONTENT: {
        "model": ErrorOut,
        "description": "The input breaks a rule; nothing was changed",
    }
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    status.HTTP_409_CONFLICT: {
        "model": ErrorOut,
        "description": "The record's state forbids this (closed, published, reversed …)",
    }
}
WRITE = {**NOT_FOUND, **BAD_INPUT, **CONFLICT}
UNHEALTHY: dict[int | str, dict[str, Any]] = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {"model": HealthOut, "description": "A part is down"}
}


def _error(code: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse(ErrorOut(error=error, detail=detail).model_dump(), status_code=code)


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return _error(status.HTTP_404_NOT_FOUND, "not_found", str(exc))


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return _error(status.HTTP_409_CONFLICT, "conflict", str(exc))


async def _not_ready(request: Request, exc: Exception) -> JSONResponse:
    return _error(status.HTTP_409_CONFLICT, "not_ready", str(exc))


async def _domain(request: Request, exc: Exception) -> JSONResponse:
    return _error(status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid", str(exc))


async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
    # What the request validation let through but the database refuses to store or
    # compare (a NUL in text on PostgreSQL, a number beyond a column): bad input, not
    # a failure, and the transaction it was in has been rolled back.
    log.info("database refused a value serving %s: %s", request.url.path, exc)
    return _error(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        "invalid",
        "a value in the request cannot be stored (a NUL character, or a number out of range)",
    )


async def _unhealthy(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Unhealthy)
    return JSONResponse(exc.report, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


async def _storage(request: Request, exc: Exception) -> JSONResponse:
    log.error("database error serving %s: %s", request.url.path, exc)
    return _error(status.HTTP_503_SERVICE_UNAVAILABLE, "storage_unavailable", "database error")


def install_error_handlers(app: FastAPI) -> None:
    """Map our errors to HTTP responses."""
    app.add_exception_handler(NotFound, _not_found)
    # Starlette picks the handler of the nearest class in the exception's MRO.
    app.add_exception_handler(Conflict, _conflict)
    app.add_exception_handler(NotReady, _not_ready)
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(DataError, _unstorable)
    app.add_exception_handler(Unhealthy, _unhealthy)
    app.add_exception_handler(StorageError, _storage)
