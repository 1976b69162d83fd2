"""HTTP API: FastAPI app factory, dependencies, routes and error handlers."""

from server.api.app import create_app

__all__ = ["create_app"]
