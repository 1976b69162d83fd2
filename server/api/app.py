"""The FastAPI application factory; nothing is built at import time."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI

from server import __version__
from server.api.access import API_ACCESS
from server.api.errors import install_error_handlers
from server.api.routes import (
    cardtier,
    health,
    members,
    org_units,
    organisation,
    points,
    sessions,
)
from server.runtime import ServerRuntime
from server.settings import Settings
from server.web.app import install_web


def create_app(settings: Settings, *, runtime: ServerRuntime | None = None) -> FastAPI:
    """Build the app; without a runtime, the app's lifespan starts and stops its own.

    Its own runtime migrates the database, starts the embedded broker (unless
    `mqtt_url` is set) and the ingest worker.
    """
    owned = runtime is None
    active = runtime if runtime is not None else ServerRuntime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owned:
            # Migrations and the broker's start block; keep them off the event loop.
            await to_thread.run_sync(active.start)
        try:
            yield
        finally:
            if owned:
                await to_thread.run_sync(active.stop)

    app = FastAPI(
        title="Rollcall",
        version=__version__,
        summary="Card-based attendance and points",
        lifespan=lifespan,
    )
    app.state.runtime = active
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(members.router, prefix="/api/v1", dependencies=API_ACCESS)
    app.include_router(sessions.router, prefix="/api/v1", dependencies=API_ACCESS)
    app.include_router(points.router, prefix="/api/v1", dependencies=API_ACCESS)
    app.include_router(organisation.router, prefix="/api/v1", dependencies=API_ACCESS)
    app.include_router(org_units.router, prefix="/api/v1", dependencies=API_ACCESS)
    app.include_router(cardtier.router, prefix="/api/v1", dependencies=API_ACCESS)
    install_web(app, settings)
    return app
