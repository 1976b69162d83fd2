"""CSRF protection: every state-changing request under /admin, and under /api when it is
authenticated by the session cookie, must carry the token (form field `csrf_token` or
header `X-CSRF-Token`); bearer-token requests are exempt.

Signed in, the token is the session's own (synchronizer token, kept server-side).
Before sign-in (the sign-in form, the language switch) it is a random value in the
`rollcall_csrf` cookie that the form repeats (double submit).
"""

import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any, Final
from urllib.parse import parse_qs

from anyio import to_thread
from markupsafe import Markup, escape
from starlette.datastructures import FormData
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.runtime import ServerRuntime
from server.services.auth import CsrfRejected, session_csrf_token
from server.web.auth import SESSION_COOKIE

CSRF_COOKIE: Final = "rollcall_csrf"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Refusal = Callable[[Request, CsrfRejected], Awaitable[Any]]


def csrf_token_of(connection: HTTPConnection) -> str:
    """The token this request's forms must carry: the session's, else the pre-session one."""
    state = connection.scope.get("state", {})
    token = state.get("csrf_token") or state.get("pre_session_csrf")
    return str(token or "")


def csrf_input(token: str) -> Markup:
    """The hidden form field carrying the CSRF token."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(token))


def _guarded(path: str) -> bool:
    return path == "/admin" or path.startswith(("/admin/", "/api/"))


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _submitted_field(scope: Scope, body: bytes) -> str | None:
    content_type = Request(scope).headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        values = parse_qs(body.decode("latin-1"), keep_blank_values=True).get(CSRF_FIELD)
        return values[0] if values else None
    if content_type.startswith("multipart/form-data"):
        delivered = False

        async def once() -> Message:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        form: FormData = await Request(scope, once).form()
        try:
            value = form.get(CSRF_FIELD)
            return value if isinstance(value, str) else None
        finally:
            await form.close()
    return None


class CsrfMiddleware:
    """Refuses state-changing console requests without the right token."""

    def __init__(self, app: ASGIApp, *, secure_cookie: bool, refuse: Refusal) -> None:
        self.app = app
        self.secure_cookie = secure_cookie
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the token of an unsafe request, then pass it on with its body intact."""
        if scope["type"] != "http" or not _guarded(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        pre_session = request.cookies.get(CSRF_COOKIE)
        new_cookie = None
        if not pre_session:
            pre_session = new_cookie = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["pre_session_csrf"] = pre_session
        if scope["method"] in UNSAFE_METHODS and not self._exempt(request):
            body = await _read_body(receive)
            expected = await self._expected(scope, request, pre_session if not new_cookie else None)
            submitted = request.headers.get(CSRF_HEADER) or await _submitted_field(scope, body)
            if not expected or not submitted or not secrets.compare_digest(expected, submitted):
                response = await self.refuse(request, CsrfRejected("missing or wrong CSRF token"))
                await response(scope, receive, send)
                return
            receive = _replay(body, receive)
        if new_cookie is not None:
            send = self._setting_cookie(send, new_cookie)
        await self.app(scope, receive, send)

    @staticmethod
    def _exempt(request: Request) -> bool:
        if request.headers.get("authorization", "")[:7].lower() == "bearer ":
            return True
        # An API request without the session cookie is not the browser's: auth answers it.
        return request.url.path.startswith("/api/") and SESSION_COOKIE not in request.cookies

    @staticmethod
    async def _expected(scope: Scope, request: Request, pre_session: str | None) -> str | None:
        secret = request.cookies.get(SESSION_COOKIE)
        if secret:
            runtime = scope["app"].state.runtime
            assert isinstance(runtime, ServerRuntime)

            def lookup() -> str | None:
                with runtime.database.sessions() as db:
                    return session_csrf_token(db, secret)

            token = await to_thread.run_sync(lookup)
            if token is not None:
                return token
        return pre_session

    def _setting_cookie(self, send: Send, value: str) -> Send:
        cookie: SimpleCookie = SimpleCookie()
        cookie[CSRF_COOKIE] = value
        morsel = cookie[CSRF_COOKIE]
        morsel["path"] = "/"
        morsel["httponly"] = True
        morsel["samesite"] = "Lax"
        if self.secure_cookie:
            morsel["secure"] = True
        header = morsel.OutputString().encode("latin-1")

        async def sending(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"set-cookie", header)]
            await send(message)

        return sending


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replaying() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replaying
