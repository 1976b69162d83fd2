"""Mounting the console on the FastAPI app: static files, page routers, CSRF, error pages."""

from pathlib import Path
from typing import Final

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from server.settings import Settings
from server.web.access import page_access
from server.web.csrf import CsrfMiddleware
from server.web.handlers import install_handlers, refuse_csrf
from server.web.pages import ROUTERS

STATIC_DIR: Final = Path(__file__).parent / "static"


def install_web(app: FastAPI, settings: Settings) -> None:
    """Add the console to the app; call once from create_app, after the API's handlers."""
    app.state.web_settings = settings
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in ROUTERS:
        # Objects named in a page's path are checked against the principal's scope first.
        app.include_router(router, dependencies=[Depends(page_access)])
    install_handlers(app)
    app.add_middleware(CsrfMiddleware, secure_cookie=settings.cookie_secure, refuse=refuse_csrf)
