"""Typed FastAPI dependencies: the runtime and a database session per request."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server.api.auth import PrincipalDep
from server.runtime import ServerRuntime
from server.services.unit_of_work import UnitOfWork


def get_runtime(request: Request) -> ServerRuntime:
    """The server runtime the app was built with."""
    runtime = request.app.state.runtime
    if not isinstance(runtime, ServerRuntime):
        raise TypeError("app.state.runtime is not a ServerRuntime")
    return runtime


RuntimeDep = Annotated[ServerRuntime, Depends(get_runtime)]


def get_db(runtime: RuntimeDep) -> Iterator[Session]:
    """A read session for one request, closed afterwards."""
    with runtime.database.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]


def get_uow(runtime: RuntimeDep) -> UnitOfWork:
    """A unit of work for one write request."""
    return UnitOfWork(runtime.database.write_sessions)


UowDep = Annotated[UnitOfWork, Depends(get_uow)]


def get_actor(principal: PrincipalDep) -> str:
    """Who the audit log names for a request's changes: the user or token behind it."""
    return principal.username


ActorDep = Annotated[str, Depends(get_actor)]
