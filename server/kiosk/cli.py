"""The `rollcall devices` subcommands: pair kiosks and live screens, list and revoke them.

`devices create` prints the token and the URL to open on the device once, on
stdout; the database keeps only the token's hash, so they cannot be shown again.
"""

import argparse
import getpass
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from server.db.engine import open_database
from server.db.migrate import ensure_current
from server.kiosk.devices import (
    DeviceKind,
    DeviceRequest,
    create_device,
    list_devices,
    revoke_device,
)
from server.services.unit_of_work import UnitOfWork
from server.settings import Settings

COMMANDS: Final = frozenset({"devices"})
AddConfigOption = Callable[[argparse.ArgumentParser], None]


def _actor() -> str:
    """Who runs the command, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name and no passwd entry, as in some containers
        return "cli"


def add_commands(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]", add_config: AddConfigOption
) -> None:
    """Add `devices` to the `rollcall` command's subcommands."""
    devices = commands.add_parser("devices", help="pair kiosks and live screens (device tokens)")
    add_config(devices)
    actions = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a device token; prints it and its URL once")
    add_config(create)
    create.add_argument("--kind", type=DeviceKind, choices=list(DeviceKind), required=True)
    target = create.add_mutually_exclusive_group(required=True)
    target.add_argument("--reader", metavar="READER_ID", help="a kiosk's reader")
    target.add_argument("--session", type=int, metavar="ID", help="a live screen's session")
    target.add_argument("--room", metavar="ROOM_CODE", help="a live screen's room")
    create.add_argument("--label", default="", help="a name people recognise the device by")
    create.add_argument(
        "--base-url",
        help="the server's address as the device reaches it (default: http://HTTP_HOST:HTTP_PORT)",
    )
    listing = actions.add_parser("list", help="list device tokens (never the tokens themselves)")
    add_config(listing)
    revoke = actions.add_parser("revoke", help="revoke a device token at once")
    add_config(revoke)
    revoke.add_argument("device_id", type=int, metavar="ID")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run a `devices` subcommand."""
    database = open_database(settings.resolved_database_url)
    try:
        ensure_current(database)
        now = datetime.now(UTC)
        uow = UnitOfWork(database.write_sessions)
        if args.devices_command == "create":
            request = DeviceRequest(
                kind=args.kind,
                label=args.label,
                reader_id=args.reader,
                session_id=args.session,
                room_code=args.room,
            )
            device, token = create_device(uow, request, actor=_actor(), now=now)
            base = args.base_url or f"http://{settings.http_host}:{settings.http_port}"
            print(f"device {device.id}: {device.label}", file=sys.stderr, flush=True)
            print(f"token: {token}", flush=True)
            print(f"url: {base.rstrip('/')}{device.path}?token={token}", flush=True)
            return 0
        if args.devices_command == "revoke":
            device = revoke_device(uow, args.device_id, actor=_actor(), now=now)
            print(f"device {device.id} revoked", file=sys.stderr, flush=True)
            return 0
        with database.sessions() as db:
            for d in list_devices(db):
                target = d.reader_id or d.room_code or f"session {d.session_id}"
                state = "revoked" if d.revoked_at else "active"
                print(f"{d.id}\t{d.kind.value}\t{target}\t{state}\t{d.label}")
        return 0
    finally:
        database.dispose()
