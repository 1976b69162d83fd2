"""The `rollcall users` and `rollcall tokens` subcommands: console accounts and API tokens.

A password comes from `--password-file`, the environment variable
ROLLCALL_NEW_USER_PASSWORD, or a prompt (asked twice); there is never a default.
A token is printed once on stdout and only its hash is kept.
"""

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlalchemy import select

from server.db.engine import Database, open_database
from server.db.migrate import ensure_current
from server.db.models import ApiToken, OrgUnit
from server.errors import ConfigError, NotFound
from server.services import users as user_service
from server.services.auth import Role, create_api_token, revoke_api_token
from server.services.unit_of_work import UnitOfWork
from server.settings import Settings

COMMANDS: Final = frozenset({"users", "tokens"})
PASSWORD_ENV: Final = "ROLLCALL_NEW_USER_PASSWORD"  # noqa: S105 (a variable name)
AddConfigOption = Callable[[argparse.ArgumentParser], None]


def _note(text: str) -> None:
    print(f"rollcall: {text}", file=sys.stderr, flush=True)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name in some containers
        return "cli"


def add_commands(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]", add_config: AddConfigOption
) -> None:
    """Add `users` and `tokens` to the `rollcall` command's subcommands."""
    users = commands.add_parser("users", help="console accounts")
    add_config(users)
    user_actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    create = user_actions.add_parser("create", help="add a console user")
    add_config(create)
    create.add_argument("username", metavar="USERNAME")
    create.add_argument("--role", type=Role, choices=list(Role), required=True)
    create.add_argument("--org-unit", metavar="CODE", help="the org unit an org admin runs")
    create.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help=f"read the password here (or ${PASSWORD_ENV})",
    )
    listing = user_actions.add_parser("list", help="console users")
    add_config(listing)

    tokens = commands.add_parser("tokens", help="API tokens for integrations")
    add_config(tokens)
    token_actions = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    make = token_actions.add_parser("create", help="make a token; it is shown once")
    add_config(make)
    make.add_argument("--name", required=True, help="what the token is for")
    make.add_argument("--role", type=Role, choices=list(Role), required=True)
    make.add_argument("--org-unit", metavar="CODE", help="the org unit an org admin token sees")
    token_list = token_actions.add_parser("list", help="tokens (never their secrets)")
    add_config(token_list)
    revoke = token_actions.add_parser("revoke", help="revoke a token by id")
    add_config(revoke)
    revoke.add_argument("token_id", type=int, metavar="ID")


def _password(args: argparse.Namespace) -> str:
    """The new user's password from a file, the environment or a prompt; never a default."""
    if args.password_file is not None:
        try:
            return str(args.password_file.read_text(encoding="utf-8")).rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read the password file {args.password_file}: {exc}") from exc
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        raise ConfigError(
            f"no password: give --password-file, set {PASSWORD_ENV}, or run in a terminal"
        )
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise ConfigError("the passwords differ")
    return first


def _open(settings: Settings) -> Database:
    database = open_database(settings.resolved_database_url)
    try:
        ensure_current(database)
    except BaseException:
        database.dispose()
        raise
    return database


def _unit_id(database: Database, code: str | None) -> int | None:
    if code is None:
        return None
    with database.sessions() as db:
        unit_id = db.scalar(select(OrgUnit.id).where(OrgUnit.code == code))
    if unit_id is None:
        raise NotFound("org unit", code)
    return unit_id


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run a `users` or `tokens` subcommand."""
    database = _open(settings)
    try:
        uow = UnitOfWork(database.write_sessions)
        if args.command == "users":
            if args.users_command == "create":
                password = _password(args)
                user = user_service.create_user(
                    uow,
                    username=args.username,
                    password=password,
                    role=args.role,
                    org_unit_id=_unit_id(database, args.org_unit),
                    actor=_actor(),
                )
                _note(f"created {user.role.value} {user.username}")
                return 0
            with database.sessions() as db:
                for user in user_service.list_users(db):
                    state = "disabled" if user.disabled else "active"
                    print(
                        f"{user.username}\t{user.role.value}\t{user.org_unit_name or '-'}\t{state}"
                    )
            return 0
        if args.tokens_command == "create":
            made = create_api_token(
                uow, name=args.name, role=args.role, org_unit_code=args.org_unit
            )
            _note(f"token {made.token_id} made; it is shown once, keep it safe")
            print(made.secret, flush=True)
            return 0
        if args.tokens_command == "revoke":
            if not revoke_api_token(uow, args.token_id, datetime.now(UTC), actor=_actor()):
                raise NotFound("live token", args.token_id)
            _note(f"token {args.token_id} revoked")
            return 0
        with database.sessions() as db:
            for token in db.scalars(select(ApiToken).order_by(ApiToken.id)):
                state = "revoked" if token.revoked_at else "live"
                print(f"{token.id}\t{token.name}\t{token.role}\t{state}")
        return 0
    finally:
        database.dispose()
