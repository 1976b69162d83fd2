"""The console's page routers; each engineer adds theirs with one import and one list entry."""

from fastapi import APIRouter

from server.web.pages.audit import router as audit_router
from server.web.pages.devices import router as devices_router
from server.web.pages.exports import router as exports_router
from server.web.pages.imports import router as imports_router
from server.web.pages.kiosk import router as kiosk_router
from server.web.pages.live import router as live_router
from server.web.pages.login import router as login_router
from server.web.pages.members import router as members_router
from server.web.pages.org import router as org_router
from server.web.pages.rankings import router as rankings_router
from server.web.pages.readers import router as readers_router
from server.web.pages.rooms import router as rooms_router
from server.web.pages.rules import router as rules_router
from server.web.pages.sessions import router as sessions_router
from server.web.pages.sessions_review import router as sessions_review_router
from server.web.pages.today import router as today_router
from server.web.pages.unknown_cards import router as unknown_cards_router
from server.web.pages.users import router as users_router

ROUTERS: list[APIRouter] = [
    login_router,
    today_router,
    users_router,
    # Before the review page's /admin/sessions/{id}, so /admin/sessions/new is ours.
    sessions_router,
    sessions_review_router,
    members_router,
    unknown_cards_router,
    audit_router,
    kiosk_router,
    live_router,
    devices_router,
    imports_router,
    exports_router,
    rankings_router,
    org_router,
    rooms_router,
    readers_router,
    rules_router,
]
