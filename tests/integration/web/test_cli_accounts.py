"""`rollcall users` and `rollcall tokens`: the first account, a password never defaulted, tokens."""

from pathlib import Path

import pytest
from sqlalchemy import select

from server.cli import main
from server.db.engine import open_database
from server.db.models import ApiToken, AuditEntry, ConsoleUser
from server.services.auth import password_matches, resolve_api_token

pytestmark = pytest.mark.integration


@pytest.fixture
def database_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'rollcall.sqlite3'}"
    monkeypatch.setenv("ROLLCALL_DATABASE_URL", url)
    monkeypatch.delenv("ROLLCALL_NEW_USER_PASSWORD", raising=False)
    assert main(["db", "upgrade"]) == 0
    return url


def test_users_create_takes_the_password_from_a_file_or_the_environment(
    database_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = tmp_path / "password"
    secret.write_text("a long enough password\n")
    assert (
        main(["users", "create", "boss", "--role", "super_admin", "--password-file", str(secret)])
        == 0
    )
    # No file, no variable and no terminal: refused, never a default password.
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["users", "create", "clerk", "--role", "auditor"]) == 2
    monkeypatch.setenv("ROLLCALL_NEW_USER_PASSWORD", "another long password")
    assert main(["users", "create", "clerk", "--role", "auditor"]) == 0
    # An org admin needs an org unit that exists.
    assert main(["users", "create", "branch", "--role", "org_admin", "--org-unit", "NOPE"]) == 1
    capsys.readouterr()
    assert main(["users", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed == ["boss\tsuper_admin\t-\tactive", "clerk\tauditor\t-\tactive"]
    database = open_database(database_env)
    try:
        with database.sessions() as db:
            boss = db.scalar(select(ConsoleUser).where(ConsoleUser.username == "boss"))
            assert boss is not None
            assert boss.password_hash.startswith("$argon2id$")
            assert password_matches(boss.password_hash, "a long enough password")
            assert db.scalars(select(AuditEntry.action)).all() == ["user.create", "user.create"]
    finally:
        database.dispose()


def test_tokens_are_shown_once_and_stored_hashed(
    database_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tokens", "create", "--name", "hr-sync", "--role", "auditor"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("rct_")
    database = open_database(database_env)
    try:
        with database.sessions() as db:
            stored = db.scalar(select(ApiToken))
            assert stored is not None
            assert secret not in stored.token_hash
            principal = resolve_api_token(db, secret)
            assert principal is not None
            assert (principal.role.value, principal.can_write) == ("auditor", False)
        assert main(["tokens", "revoke", str(stored.id)]) == 0
        with database.sessions() as db:
            assert resolve_api_token(db, secret) is None
    finally:
        database.dispose()
