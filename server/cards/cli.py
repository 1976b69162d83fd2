"""The `rollcall cards`, `rooms` and `activity-types` subcommands of the strong card tier.

rollcall cards personalise-key --uid UID [--tech T] [--out FILE]
    derive the card's key under the current master key, write a key file (UID,
    version, key; mode 0600) for `rollcall-reader personalise --key-file FILE`
    and record the version as issued to the card (it counts as the card's once
    a strong tap answers with it); audited. Without --out: to stdout.
rollcall cards personalise-key --reissue --out-dir DIR
    after a master key rotation: the same for every active personalised card not
    known to hold the current version, one key file each in DIR (mode 0700), for
    `rollcall-reader personalise --key-dir DIR`; audited card by card.
rollcall cards keys                     active personalised cards by master key version
    issued and proved: where a master key rotation stands, and which old
    version's line no card needs any more
rollcall cards clones [--all]           the suspected-clone inbox
rollcall rooms require-strong ROOM [--off]
rollcall activity-types require-strong CODE [--off]
rollcall rooms strong-tier              where the strong tier is required
"""

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from sqlalchemy.exc import SQLAlchemyError

from protocol import CardTech
from server.db.engine import Database, open_database
from server.db.migrate import ensure_current
from server.domain.cardkeys import CardKeyring
from server.errors import ConfigError, StorageError
from server.services.cardauth import (
    MASTER_KEY_ENV,
    MASTER_KEY_FILE_ENV,
    PersonalisedKey,
    card_keyring,
    key_versions_report,
    list_suspected_clones,
    personalise_card,
    reissue_keys,
    set_activity_type_requirement,
    set_room_requirement,
    strong_tier_requirements,
)
from server.settings import Settings

COMMANDS: Final = frozenset({"cards", "rooms", "activity-types"})
AddConfigOption = Callable[[argparse.ArgumentParser], None]


def add_commands(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]", add_config: AddConfigOption
) -> None:
    """Add `cards`, `rooms` and `activity-types` to the `rollcall` command's subcommands."""
    cards = commands.add_parser("cards", help="card keys of the strong tier; suspected clones")
    add_config(cards)
    card_actions = cards.add_subparsers(dest="cards_command", required=True, metavar="ACTION")
    personalise = card_actions.add_parser(
        "personalise-key", help="derive a card's key for personalisation and mark it personalised"
    )
    add_config(personalise)
    which = personalise.add_mutually_exclusive_group(required=True)
    which.add_argument("--uid", help="the card's UID (hex)")
    which.add_argument(
        "--reissue",
        action="store_true",
        help="every active personalised card not known to hold the current version (--out-dir)",
    )
    personalise.add_argument("--tech", choices=[t.value for t in CardTech], default=None)
    personalise.add_argument(
        "--out", type=Path, default=None, help="write the key here (mode 0600) instead of stdout"
    )
    personalise.add_argument(
        "--out-dir", type=Path, default=None, help="with --reissue: one key file per card here"
    )
    keys = card_actions.add_parser(
        "keys", help="cards by master key version issued and proved (rotation progress)"
    )
    add_config(keys)
    clones = card_actions.add_parser("clones", help="the suspected-clone inbox")
    add_config(clones)
    clones.add_argument("--all", action="store_true", help="include resolved entries")

    for name, what in (("rooms", "room code"), ("activity-types", "activity type code")):
        parser = commands.add_parser(name, help=f"{name}: the strong card tier")
        add_config(parser)
        actions = parser.add_subparsers(dest="tier_command", required=True, metavar="ACTION")
        require = actions.add_parser(
            "require-strong", help="accept only cards that answer their challenge"
        )
        add_config(require)
        require.add_argument("code", help=what)
        require.add_argument("--off", action="store_true", help="stop requiring it")
        listing = actions.add_parser("strong-tier", help="where the strong tier is required")
        add_config(listing)


def _actor() -> str:
    """Who runs the command, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name and no passwd entry, as in some containers
        return "cli"


def _note(text: str) -> None:
    print(f"rollcall: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run a `cards`, `rooms` or `activity-types` subcommand."""
    database = open_database(settings.resolved_database_url)
    try:
        ensure_current(database)
        if args.command == "cards" and args.cards_command == "personalise-key":
            return _personalise(database, settings, args)
        if args.command == "cards" and args.cards_command == "keys":
            return _keys(database, settings)
        if args.command == "cards":
            return _clones(database, include_resolved=args.all)
        return _tier(database, args)
    except SQLAlchemyError as exc:
        raise StorageError(f"database error: {exc}") from exc
    finally:
        database.dispose()


def _personalise(database: Database, settings: Settings, args: argparse.Namespace) -> int:
    keyring = card_keyring(settings)
    if keyring is None:
        raise ConfigError(
            f"no card master key: set {MASTER_KEY_FILE_ENV} (a file) or {MASTER_KEY_ENV}"
        )
    if args.reissue:
        if args.out_dir is None or args.out is not None or args.tech is not None:
            raise ConfigError(
                "--reissue writes one file per card: give --out-dir, not --out/--tech"
            )
        return _reissue(database, keyring, args.out_dir)
    if args.out_dir is not None:
        raise ConfigError("--out-dir goes with --reissue; for one card give --out FILE")
    with database.write_sessions.begin() as session:
        made = personalise_card(session, keyring, args.uid, tech=args.tech, actor=_actor())
        text = key_file_text(made)
        # Written before the commit: a key nobody could use must not leave a card marked.
        if args.out is not None:
            _write_private(args.out, text)
    _note(
        f"card {made.tech}:{made.uid} issued key version {made.key_version}; write it to the "
        "card with `rollcall-reader personalise --key-file` (it counts once the card answers "
        "with it: `rollcall cards keys`)"
    )
    if args.out is None:
        print(text, end="", flush=True)
    return 0


def _reissue(database: Database, keyring: CardKeyring, out_dir: Path) -> int:
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot make {out_dir}: {exc.strerror}") from exc
    written: list[Path] = []
    try:
        with database.write_sessions.begin() as session:
            for made in reissue_keys(session, keyring, actor=_actor()):
                path = out_dir / f"{made.tech}-{made.uid}.key"
                # Written before the commit, as for one card; all undone if any fails.
                _write_private(path, key_file_text(made))
                written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    _note(
        f"{len(written)} cards issued key version {keyring.current}, one key file each in "
        f"{out_dir}; write them with `rollcall-reader personalise --key-dir {out_dir}`"
    )
    return 0


def key_file_text(made: PersonalisedKey) -> str:
    """The key file `rollcall-reader personalise --key-file` reads: TOML, one card."""
    return (
        "# Rollcall card key for one card: write it with\n"
        "# `rollcall-reader personalise --key-file THIS-FILE`, then delete this file.\n"
        f'uid = "{made.uid}"\n'
        f'tech = "{made.tech}"\n'
        f"key_version = {made.key_version}\n"
        f'key = "{made.key.hex().upper()}"\n'
    )


def _write_private(path: Path, text: str) -> None:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as stream:
            stream.write(text)
    except OSError as exc:
        raise ConfigError(f"cannot write the key to {path}: {exc.strerror}") from exc


def _keys(database: Database, settings: Settings) -> int:
    keyring = card_keyring(settings)
    with database.sessions() as session:
        report = key_versions_report(session, keyring)
    print("version\tconfigured\tissued\tproved\tneeded by", flush=True)
    for v in report.versions:
        current = " (current)" if v.version == report.current else ""
        print(
            f"{v.version}{current}\t{'yes' if v.configured else 'NO'}\t{v.issued}\t"
            f"{v.proven}\t{v.needed_by}",
            flush=True,
        )
    print(
        f"{report.personalised} active cards personalised, {report.awaiting_proof} of them "
        "issued a key they have not answered a challenge with yet",
        flush=True,
    )
    if report.never_proven:
        print(
            f"{report.never_proven} cards never answered a challenge: until they do, every "
            "version up to the one issued them counts as needed",
            flush=True,
        )
    for v in report.versions:
        if v.needed_by and not v.configured:
            print(
                f"version {v.version} is not in the keyring, yet {v.needed_by} cards may hold "
                "only it: they fail the strong tier until re-personalised",
                flush=True,
            )
    for version in report.droppable():
        print(f"no active card needs version {version} any more: its key line can go", flush=True)
    if keyring is None:
        _note(f"no card master key configured ({MASTER_KEY_FILE_ENV} or {MASTER_KEY_ENV})")
    return 0


def _clones(database: Database, *, include_resolved: bool) -> int:
    with database.sessions() as session:
        listing = list_suspected_clones(session, include_resolved=include_resolved)
    for c in listing:
        print(
            f"{c.tech}:{c.uid}\tcard {c.card_id}\t{c.tap_count} taps\t"
            f"last {c.last_seen_at.isoformat()} at {c.last_reader_id or '-'}\t"
            f"{'resolved' if c.resolved else 'open'}\t{c.last_reason or ''}",
            flush=True,
        )
    if not listing:
        _note("no suspected clones")
    return 0


def _tier(database: Database, args: argparse.Namespace) -> int:
    if args.tier_command == "strong-tier":
        with database.sessions() as session:
            rooms, types = strong_tier_requirements(session)
        for code in rooms if args.command == "rooms" else types:
            print(code, flush=True)
        return 0
    required = not args.off
    with database.write_sessions.begin() as session:
        if args.command == "rooms":
            set_room_requirement(session, args.code, required=required, actor=_actor())
        else:
            set_activity_type_requirement(session, args.code, required=required, actor=_actor())
    kind = "room" if args.command == "rooms" else "activity type"
    state = "now requires" if required else "no longer requires"
    _note(f"{kind} {args.code} {state} the strong card tier")
    return 0
