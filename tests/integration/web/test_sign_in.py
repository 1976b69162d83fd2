"""Signing in and out of the console: passwords, cookies, timeouts, throttling, CSRF."""

from datetime import timedelta

import pytest

from server.services.auth import Role
from tests.support.console import PASSWORD, csrf_token, make_user, sign_in

pytestmark = pytest.mark.integration


def test_sign_in_opens_a_session_with_safe_cookies_and_sign_out_ends_it(console) -> None:
    make_user(console.database, "admin", Role.SUPER_ADMIN)
    client = console.client
    assert (
        client.get("/admin/", follow_redirects=False).headers["location"].startswith("/admin/login")
    )
    form = client.get("/admin/login")
    assert "登录" in form.text
    response = client.post(
        "/admin/login",
        data={"username": "admin", "password": PASSWORD, "csrf_token": csrf_token(form.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    home = client.get("/admin/")
    assert home.status_code == 200
    assert "今日概览" in home.text
    client.post("/admin/logout", data={"csrf_token": csrf_token(home.text)})
    assert client.get("/admin/", follow_redirects=False).status_code == 303


def test_a_wrong_password_is_refused(sqlite_console) -> None:
    make_user(sqlite_console.database, "admin")
    client = sqlite_console.client
    form = client.get("/admin/login")
    response = client.post(
        "/admin/login",
        data={"username": "admin", "password": "wrong", "csrf_token": csrf_token(form.text)},
        follow_redirects=False,
    )
    assert response.status_code == 200
    assert "用户名或密码错误" in response.text
    assert client.get("/admin/", follow_redirects=False).status_code == 303


def test_the_eleventh_wrong_password_in_a_minute_is_throttled(sqlite_console) -> None:
    make_user(sqlite_console.database, "admin")
    client = sqlite_console.client
    token = csrf_token(client.get("/admin/login").text)
    codes = [
        client.post(
            "/admin/login",
            data={"username": "admin", "password": f"wrong{i}", "csrf_token": token},
            follow_redirects=False,
        ).status_code
        for i in range(11)
    ]
    assert codes[:10] == [200] * 10
    assert codes[10] == 429
    # Even the right password waits until the window has passed.
    right = {"username": "admin", "password": PASSWORD, "csrf_token": token}
    assert client.post("/admin/login", data=right, follow_redirects=False).status_code == 429
    sqlite_console.clock.advance(timedelta(seconds=61))
    assert client.post("/admin/login", data=right, follow_redirects=False).status_code == 303


def test_idle_and_absolute_timeouts_end_the_session(sqlite_console) -> None:
    make_user(sqlite_console.database, "admin")
    client, clock, settings = sqlite_console.client, sqlite_console.clock, sqlite_console.settings
    sign_in(client, "admin")
    clock.advance(settings.session_idle - timedelta(minutes=1))
    assert client.get("/admin/").status_code == 200
    clock.advance(settings.session_idle + timedelta(seconds=1))
    assert client.get("/admin/", follow_redirects=False).status_code == 303

    sign_in(client, "admin")
    step = settings.session_idle - timedelta(minutes=1)
    elapsed = timedelta(0)
    while elapsed + step < settings.session_absolute:
        clock.advance(step)
        elapsed += step
        assert client.get("/admin/").status_code == 200
    clock.advance(step)
    assert client.get("/admin/", follow_redirects=False).status_code == 303


def test_posts_without_the_csrf_token_are_refused(sqlite_console) -> None:
    make_user(sqlite_console.database, "admin")
    client = sqlite_console.client
    # Not even the sign-in form takes a post without it.
    refused = client.post("/admin/login", data={"username": "admin", "password": PASSWORD})
    assert refused.status_code == 403
    token = sign_in(client, "admin")
    new_user = {"username": "clerk", "password": PASSWORD, "role": "auditor"}
    assert client.post("/admin/users", data=new_user).status_code == 403
    assert client.post("/admin/users", data={**new_user, "csrf_token": "forged"}).status_code == 403
    assert client.post("/admin/logout").status_code == 403
    assert client.get("/admin/").status_code == 200
    made = client.post(
        "/admin/users", data={**new_user, "csrf_token": token}, follow_redirects=True
    )
    assert made.status_code == 200
    assert "clerk" in made.text
    by_header = client.post(
        "/admin/users",
        data={**new_user, "username": "clerk2"},
        headers={"X-CSRF-Token": token},
        follow_redirects=True,
    )
    assert by_header.status_code == 200


def test_polling_for_fresh_counts_does_not_keep_an_idle_session_alive(sqlite_console) -> None:
    make_user(sqlite_console.database, "admin")
    client, clock, settings = sqlite_console.client, sqlite_console.clock, sqlite_console.settings
    sign_in(client, "admin")
    poll = {"HX-Request": "true", "X-Rollcall-Poll": "1"}
    for _ in range(4):
        clock.advance(settings.session_idle / 3)
        assert client.get("/admin/today/sessions", headers=poll).status_code == 200
    # Polled all along, but nobody did anything for longer than the idle timeout.
    assert client.get("/admin/", follow_redirects=False).status_code == 303


def test_the_last_super_admin_cannot_be_demoted(sqlite_console) -> None:
    admin = make_user(sqlite_console.database, "admin")
    token = sign_in(sqlite_console.client, "admin")
    refused = sqlite_console.client.post(
        f"/admin/users/{admin.id}", data={"role": "auditor", "csrf_token": token}
    )
    assert refused.status_code == 409
    assert sqlite_console.client.get("/admin/users").status_code == 200
