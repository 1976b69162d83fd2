"""The `rollcall audit` subcommand: `rollcall audit verify` checks the chain."""

import argparse
from collections.abc import Callable
from typing import Final

from sqlalchemy.exc import SQLAlchemyError

from server.audit.chain import count_entries, verify_chain
from server.db.engine import open_database
from server.db.migrate import ensure_current
from server.errors import StorageError
from server.settings import Settings

COMMANDS: Final = frozenset({"audit"})
EXIT_BROKEN: Final = 1
AddConfigOption = Callable[[argparse.ArgumentParser], None]


def add_commands(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]", add_config: AddConfigOption
) -> None:
    """Add `audit` to the `rollcall` command's subcommands."""
    audit = commands.add_parser("audit", help="the append-only audit log")
    add_config(audit)
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="check the hash chain; name the first broken row")
    add_config(verify)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run an `audit` subcommand: 0 if the chain holds, 1 naming the first broken row."""
    database = open_database(settings.resolved_database_url)
    try:
        ensure_current(database)
        with database.sessions() as session:
            broken = verify_chain(session)
            total = count_entries(session)
    except SQLAlchemyError as exc:
        raise StorageError(f"reading the audit log failed: {exc}") from exc
    finally:
        database.dispose()
    if broken is not None:
        print(f"rollcall: audit chain BROKEN at row {broken} (of {total} rows)", flush=True)
        return EXIT_BROKEN
    print(f"rollcall: audit chain OK, {total} rows", flush=True)
    return 0
