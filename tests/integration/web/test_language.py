"""Chinese first, English on request: the switch, and a complete English catalog."""

import importlib.util
import re
from pathlib import Path

import pytest

from server.services.auth import Role
from server.web.i18n import catalog
from tests.support.console import csrf_token, make_user, sign_in

pytestmark = pytest.mark.integration

CJK = re.compile(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]")
ROOT = Path(__file__).resolve().parents[3]


def _visible_text(html: str) -> str:
    """The page's text without tags, scripts, styles or attribute values."""
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def test_the_console_is_chinese_until_english_is_chosen(sqlite_console) -> None:
    make_user(sqlite_console.database, "admin", Role.SUPER_ADMIN)
    client = sqlite_console.client
    login = client.get("/admin/login")
    assert 'lang="zh-CN"' in login.text
    assert "登录" in login.text
    switched = client.post(
        "/admin/lang",
        data={"lang": "en", "next": "/admin/login", "csrf_token": csrf_token(login.text)},
        follow_redirects=True,
    )
    assert 'lang="en"' in switched.text
    assert "Sign in" in switched.text
    leftover = CJK.findall(_visible_text(switched.text).replace("中文", ""))
    assert not leftover, "untranslated text on the sign-in page"
    sign_in(client, "admin")
    # With no data in the database, every word on these pages is the console's own.
    for path in (
        "/admin/",
        "/admin/users",
        "/admin/members",
        "/admin/unknown-cards",
        "/admin/audit",
    ):
        page = client.get(path)
        assert page.status_code == 200, path
        leftover = CJK.findall(_visible_text(page.text).replace("中文", ""))
        assert not leftover, f"{path}: untranslated {''.join(leftover)[:40]}"
    back = client.post(
        "/admin/lang",
        data={"lang": "zh_CN", "next": "/admin/", "csrf_token": csrf_token(page.text)},
        follow_redirects=True,
    )
    assert "今日概览" in back.text


def test_every_console_message_has_an_english_translation() -> None:
    spec = importlib.util.spec_from_file_location("translations", ROOT / "scripts/translations.py")
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    english = catalog("en")
    untranslated = [
        str(message.id)
        for message in script.extract()
        if message.id and isinstance(message.id, str) and english.gettext(message.id) == message.id
    ]
    assert not untranslated, f"run `make translations` and translate: {untranslated[:10]}"
