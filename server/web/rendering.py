"""Rendering pages: one Jinja2 environment, gettext from the request's language, the CSRF field.

Templates load from server/web/templates and from any directory registered with
`register_templates`. Every page gets `request`, `current_user` (the Principal or
None), `csrf_token`, `lang`, `languages`, and the globals `csrf_input()` and `_()`.
"""

from collections.abc import Mapping
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup

from server.web import i18n
from server.web.csrf import csrf_input as _csrf_field
from server.web.csrf import csrf_token_of

TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
_DEFAULT_ZONE: Final = "Asia/Shanghai"


@cache
def environment() -> Environment:
    """The console's Jinja2 environment, built on first use."""
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(TEMPLATES_DIR)]),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=i18n.gettext, ngettext=i18n.ngettext, newstyle=True
    )
    env.globals["csrf_input"] = _csrf_input
    env.globals["role_name"] = role_name
    env.globals["status_name"] = status_name
    env.filters["localtime"] = _localtime
    env.filters["localdate"] = _localdate
    return env


def register_templates(path: Path) -> None:
    """Let the environment load templates from another directory too (after the console's own)."""
    loader = environment().loader
    assert isinstance(loader, ChoiceLoader)
    if not any(
        isinstance(one, FileSystemLoader) and Path(path) in map(Path, one.searchpath)
        for one in loader.loaders
    ):
        loader.loaders = [*loader.loaders, FileSystemLoader(path)]


def role_name(role: str) -> str:
    """A role as people call it, in the active language."""
    names = {
        "super_admin": i18n.gettext("超级管理员"),
        "org_admin": i18n.gettext("组织管理员"),
        "auditor": i18n.gettext("审计员"),
    }
    return names.get(str(role), str(role))


def status_name(status: str) -> str:
    """A status (attendance, session, card, leave) as people call it, in the active language."""
    _ = i18n.gettext
    names = {
        "present": _("出席"),
        "late": _("迟到"),
        "left_early": _("早退"),
        "absent": _("缺席"),
        "excused": _("请假"),
        "not_yet": _("未签到"),
        "planned": _("未开始"),
        "running": _("进行中"),
        "ended": _("已结束"),
        "closed": _("已结算"),
        "cancelled": _("已取消"),
        "active": _("正常"),
        "lost": _("已挂失"),
        "revoked": _("已注销"),
        "replaced": _("已换卡"),
        "pending": _("待审批"),
        "approved": _("已批准"),
        "rejected": _("已驳回"),
    }
    return names.get(str(status), str(status))


@pass_context
def _csrf_input(context: Context) -> Markup:
    return _csrf_field(str(context.get("csrf_token", "")))


@pass_context
def _localtime(context: Context, value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An aware UTC time as people read it, in the configured zone."""
    if value is None:
        return ""
    zone = context.get("zone")
    return value.astimezone(
        zone if isinstance(zone, ZoneInfo) else ZoneInfo(_DEFAULT_ZONE)
    ).strftime(fmt)


def _localdate(value: date | None) -> str:
    return "" if value is None else value.isoformat()


def _zone(request: Request) -> ZoneInfo:
    settings = getattr(request.app.state, "web_settings", None)
    zone = getattr(settings, "zone", None)
    return zone if isinstance(zone, ZoneInfo) else ZoneInfo(_DEFAULT_ZONE)


def render(
    request: Request,
    template: str,
    context: Mapping[str, object] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render a console template for this request, in the request's language."""
    language = i18n.language_of(request)
    values: dict[str, Any] = {
        "request": request,
        "current_user": getattr(request.state, "principal", None),
        "csrf_token": csrf_token_of(request),
        "lang": language,
        "html_lang": i18n.HTML_LANG[language],
        "languages": i18n.LANGUAGES,
        "zone": _zone(request),
        "path": request.url.path,
    }
    if context:
        values.update(context)
    with i18n.active_language(language):
        html = environment().get_template(template).render(values)
    return HTMLResponse(html, status_code=status_code)


def redirect(target: str) -> RedirectResponse:
    """Go to another page after a form post (303, so the browser GETs it)."""
    return RedirectResponse(target, status_code=303)
