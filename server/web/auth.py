"""Who is signed in, for console pages: the API's principal dependencies, re-exported.

A request is authenticated by a bearer API token (`Authorization: Bearer rct_…`)
or by the console's session cookie. Without either, a page redirects to the
sign-in form and an API request is answered 401 (see `server.web.handlers`).
"""

from server.api.auth import (
    SESSION_COOKIE,
    OptionalPrincipalDep,
    PrincipalDep,
    SuperAdminDep,
    WriterDep,
    current_principal,
    optional_principal,
    super_admin,
    web_settings,
    writer,
)
from server.services.auth import Principal, Role

__all__ = [
    "SESSION_COOKIE",
    "OptionalPrincipalDep",
    "Principal",
    "PrincipalDep",
    "Role",
    "SuperAdminDep",
    "WriterDep",
    "current_principal",
    "optional_principal",
    "super_admin",
    "web_settings",
    "writer",
]
