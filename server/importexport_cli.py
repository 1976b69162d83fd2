"""The `rollcall import` and `rollcall export` subcommands (CSV and XLSX).

`import KIND FILE --dry-run` prints what the import would do and every bad row
(line number, column, reason) and changes nothing; without --dry-run the file
is applied whole or not at all. Either exits 1 if any row is bad. `export`
writes the file named by -o and is recorded in the audit log like any export.
"""

import argparse
import getpass
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final

from server.db.engine import Database, open_database
from server.db.migrate import ensure_current
from server.errors import ConfigError
from server.services import exports, imports
from server.services.unit_of_work import UnitOfWork
from server.settings import Settings

COMMANDS: Final = frozenset({"import", "export"})
AddConfigOption = Callable[[argparse.ArgumentParser], None]
EXIT_BAD_ROWS: Final = 1


def _actor() -> str:
    """Who runs the command, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name and no passwd entry, as in some containers
        return "cli"


def _note(text: str) -> None:
    sys.stderr.write(f"rollcall: {text}\n")
    sys.stderr.flush()


def _say(text: str) -> None:
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a day is written like 2026-03-01, not {text!r}") from exc


def add_commands(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]", add_config: AddConfigOption
) -> None:
    """Add `import` and `export` to the `rollcall` command's subcommands."""
    importing = commands.add_parser(
        "import", help="import org units, members or cards from CSV or XLSX"
    )
    add_config(importing)
    importing.add_argument("kind", type=imports.ImportKind, choices=list(imports.ImportKind))
    importing.add_argument("file", type=Path, metavar="FILE", help="a .csv or .xlsx file")
    importing.add_argument(
        "--dry-run", action="store_true", help="check every row and change nothing"
    )
    exporting = commands.add_parser(
        "export", help="export attendance, points or rankings to CSV or XLSX (audited)"
    )
    add_config(exporting)
    exporting.add_argument("kind", type=exports.ExportKind, choices=list(exports.ExportKind))
    exporting.add_argument(
        "--from", dest="first_day", type=_day, required=True, help="first day (local)"
    )
    exporting.add_argument(
        "--to", dest="last_day", type=_day, required=True, help="last day, included"
    )
    exporting.add_argument("--org-unit", metavar="CODE", help="only this unit and its sub-units")
    exporting.add_argument(
        "--format",
        type=exports.ExportFormat,
        choices=list(exports.ExportFormat),
        default=None,
        help="csv or xlsx (default: from the output file's suffix, else xlsx)",
    )
    exporting.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")


def _open(settings: Settings) -> Database:
    database = open_database(settings.resolved_database_url)
    try:
        ensure_current(database)
    except BaseException:
        database.dispose()
        raise
    return database


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run an `import` or `export` subcommand."""
    database = _open(settings)
    try:
        uow = UnitOfWork(database.write_sessions)
        if args.command == "import":
            return _import(args, settings, uow)
        return _export(args, settings, uow)
    finally:
        database.dispose()


def _import(args: argparse.Namespace, settings: Settings, uow: UnitOfWork) -> int:
    path: Path = args.file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    rows = imports.read_rows(data, path.name, args.kind)
    now = datetime.now(UTC)
    if args.dry_run:
        report = imports.dry_run(uow, args.kind, rows, scope=None, now=now, zone=settings.zone)
    else:

        def progress(done: int, total: int) -> None:
            _note(f"written {done} of {total} rows")

        report = imports.apply(
            uow,
            args.kind,
            rows,
            actor=_actor(),
            source=path.name,
            scope=None,
            now=now,
            zone=settings.zone,
            progress=progress if len(rows) > imports.CHUNK_ROWS else None,
        )
    for problem in report.problems:
        _say(f"line {problem.line}: {problem.column}: {problem.text('en')}")
    verb = "applied" if report.applied else "would apply" if report.ok else "refused"
    _say(
        f"{args.kind.value}: {report.rows} rows, {verb}: {report.created} new, "
        f"{report.updated} changed, {report.unchanged} unchanged, "
        f"{len(report.problems)} problem(s)"
    )
    return 0 if report.ok else EXIT_BAD_ROWS


def _export(args: argparse.Namespace, settings: Settings, uow: UnitOfWork) -> int:
    output: Path = args.output
    format_ = args.format or (
        exports.ExportFormat.CSV if output.suffix.lower() == ".csv" else exports.ExportFormat.XLSX
    )
    request = exports.ExportRequest(
        args.kind, args.first_day, args.last_day, args.org_unit, format_
    )
    made = exports.export(
        uow, request, actor=_actor(), scope=None, now=datetime.now(UTC), zone=settings.zone
    )
    try:
        output.write_bytes(made.content)
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc}") from exc
    _note(f"wrote {made.rows} rows to {output}")
    return 0
