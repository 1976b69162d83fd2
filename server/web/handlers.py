"""Exception handlers of the console: the only place its HTTP status codes are chosen.

Console pages (/admin…) get HTML: a redirect to the sign-in form, or an error
page. Everything else keeps the API's JSON handlers, which these delegate to.
"""

from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import quote

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.responses import Response

from server.api.schemas import ErrorOut
from server.errors import Conflict, DomainError, NotFound
from server.services.auth import (
    AuthError,
    BadCredentials,
    CsrfRejected,
    NotSignedIn,
    Throttled,
)
from server.web.rendering import render

Handler = Callable[[Request, Exception], Awaitable[Response]]

LOGIN_PATH: Final = "/admin/login"


def is_page(request: Request) -> bool:
    """Whether the request is for a console page rather than the API."""
    path = request.url.path
    return path == "/admin" or path.startswith("/admin/")


def _json(code: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse(ErrorOut(error=error, detail=detail).model_dump(), status_code=code)


def _error_page(request: Request, code: int, kind: str, detail: str) -> Response:
    return render(request, "error.html", {"kind": kind, "detail": detail}, status_code=code)


def _not_signed_in(request: Request, exc: NotSignedIn) -> Response:
    if not is_page(request):
        response = _json(status.HTTP_401_UNAUTHORIZED, "not_signed_in", str(exc))
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    target = f"{LOGIN_PATH}?next={quote(request.url.path)}"
    if request.headers.get("hx-request"):
        # HTMX swaps fragments; tell it to load the sign-in page whole.
        return Response(status_code=status.HTTP_200_OK, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)


async def auth_error(request: Request, exc: Exception) -> Response:
    """Answer a sign-in or permission problem: redirect, error page or JSON."""
    page = is_page(request)
    if isinstance(exc, NotSignedIn):
        return _not_signed_in(request, exc)
    if isinstance(exc, Throttled):
        headers = {"Retry-After": str(exc.retry_after)}
        response: Response
        if not page:
            response = _json(status.HTTP_429_TOO_MANY_REQUESTS, "throttled", str(exc))
        else:
            response = render(
                request,
                "login.html",
                {"error": "throttled", "retry_after": exc.retry_after},
                status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            )
        response.headers.update(headers)
        return response
    if isinstance(exc, BadCredentials):
        return render(
            request, "login.html", {"error": "bad_credentials"}, status_code=status.HTTP_200_OK
        )
    kind = "csrf" if isinstance(exc, CsrfRejected) else "forbidden"
    if not page:
        return _json(status.HTTP_403_FORBIDDEN, kind, str(exc))
    return _error_page(request, status.HTTP_403_FORBIDDEN, kind, str(exc))


async def refuse_csrf(request: Request, exc: CsrfRejected) -> Response:
    """The answer of the CSRF middleware to a request without the token."""
    return await auth_error(request, exc)


def _pages_or(fallback: Handler | None, code: int, kind: str) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        if is_page(request):
            return _error_page(request, code, kind, str(exc))
        if fallback is not None:
            return await fallback(request, exc)
        return _json(code, kind, str(exc))

    return handle


def install_handlers(app: FastAPI) -> None:
    """Map auth errors everywhere, and domain errors on console pages, to responses."""
    app.add_exception_handler(AuthError, auth_error)
    for error, code, kind in (
        (NotFound, status.HTTP_404_NOT_FOUND, "not_found"),
        (Conflict, status.HTTP_409_CONFLICT, "conflict"),
        (DomainError, status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid"),
    ):
        existing = app.exception_handlers.get(error)
        app.add_exception_handler(error, _pages_or(existing, code, kind))  # type: ignore[arg-type]
