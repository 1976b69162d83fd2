"""The `rollcall` command: serve, ingest, db upgrade, demo; readers, ca, broker; audit verify;
users, tokens.

On start, `serve` prints one line per endpoint to stdout (tests and the demo
parse them), each flushed at once:

    rollcall: database at <url without password>
    rollcall: mqtt at mqtt://HOST:PORT
    rollcall: http at http://HOST:PORT

Logs go to stderr. Exit status: 0 done, 1 runtime failure, 2 bad settings or usage.
"""

import argparse
import logging
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import uvicorn

from server import __version__, importexport_cli
from server.api.app import create_app
from server.audit import cli as audit_cli
from server.cards import cli as cards_cli
from server.db.engine import open_database
from server.db.migrate import upgrade
from server.demo import DemoOptions, run_demo
from server.errors import ConfigError, RollcallError
from server.gctune import settle_heap
from server.kiosk import cli as kiosk_cli
from server.provisioning import cli as provisioning_cli
from server.runtime import ServerRuntime, require_external_broker
from server.secret_policy import refuse_default_secrets, with_demo_secrets
from server.settings import Settings, load_settings
from server.web import cli as web_cli

log = logging.getLogger("rollcall")

EXIT_FAILURE = 1
# How long `serve` lets open requests finish when asked to stop.
SHUTDOWN_GRACE_SECONDS = 3
EXIT_USAGE = 2


def announce(what: str, where: str) -> None:
    """Print one `rollcall: <what> at <where>` line to stdout and flush it."""
    print(f"rollcall: {what} at {where}", flush=True)


def _config_option(parser: argparse.ArgumentParser, *, top: bool) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        # Only the top-level option has a default, so a subcommand's copy never hides it.
        default=None if top else argparse.SUPPRESS,
        metavar="FILE",
        help="TOML settings file (default: $ROLLCALL_CONFIG)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `rollcall` command."""
    parser = argparse.ArgumentParser(
        prog="rollcall", description="Card-based attendance and points server."
    )
    parser.add_argument("--version", action="version", version=f"rollcall {__version__}")
    _config_option(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve", help="HTTP API + ingest (+ embedded broker if no mqtt_url)"
    )
    _config_option(serve, top=False)
    ingest = commands.add_parser("ingest", help="the MQTT ingest worker alone")
    _config_option(ingest, top=False)
    db = commands.add_parser("db", help="database maintenance")
    _config_option(db, top=False)
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade_parser = db_commands.add_parser("upgrade", help="migrate the schema to the newest")
    _config_option(upgrade_parser, top=False)
    demo = commands.add_parser(
        "demo", help="sample organisation, embedded broker and simulated readers tapping"
    )
    _config_option(demo, top=False)
    demo.add_argument("--members", type=int, default=200, help="members in the sample (200)")
    demo.add_argument(
        "--once", action="store_true", help="stop when the simulated readers have finished"
    )
    provisioning_cli.add_commands(commands, lambda sub: _config_option(sub, top=False))
    audit_cli.add_commands(commands, lambda sub: _config_option(sub, top=False))
    web_cli.add_commands(commands, lambda sub: _config_option(sub, top=False))
    importexport_cli.add_commands(commands, lambda sub: _config_option(sub, top=False))
    cards_cli.add_commands(commands, lambda sub: _config_option(sub, top=False))
    kiosk_cli.add_commands(commands, lambda sub: _config_option(sub, top=False))
    return parser


def _http_socket(host: str, port: int) -> socket.socket:
    """Bind the HTTP listening socket ourselves, so port 0 can be read back."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise ConfigError(f"cannot listen for HTTP on {host}:{port}: {exc}") from exc


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(settings: Settings) -> int:
    """Run migrations, broker, ingest and the HTTP server until interrupted."""
    refuse_default_secrets(settings)
    stop = _StopRequest()
    if threading.current_thread() is threading.main_thread():
        # Until uvicorn installs its own handlers (and after it restores ours), a
        # SIGTERM only asks to stop: raising from a handler at an arbitrary point of
        # uvicorn's start-up could be swallowed there and leave the server running.
        signal.signal(signal.SIGTERM, stop.handle)
    with ServerRuntime(settings) as runtime:
        announce("database", runtime.database.display_url)
        announce("mqtt", runtime.endpoint.url)
        sock = _http_socket(settings.http_host, settings.http_port)
        with sock:
            host, port = sock.getsockname()[:2]
            app = create_app(settings, runtime=runtime)
            config = uvicorn.Config(
                app,
                log_level="info",
                lifespan="on",
                access_log=False,
                # Kiosks and live screens hold event streams open for good: without a
                # limit, stopping would wait for every screen to go away.
                timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
            )
            server = uvicorn.Server(config)
            stop.server = server
            announce("http", f"http://{_url_host(host)}:{port}")
            settle_heap()
            if not stop.requested:
                # uvicorn handles SIGINT/SIGTERM and returns when it has shut down.
                server.run(sockets=[sock])
    return 0


class _StopRequest:
    """Remembers a SIGTERM that came outside uvicorn's own handlers, and passes it on."""

    def __init__(self) -> None:
        self.requested = False
        self.server: uvicorn.Server | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self.server is not None:
            self.server.should_exit = True


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received signal %d, stopping", signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
    stop.wait()


def ingest(settings: Settings) -> int:
    """Run the ingest worker alone against an external broker until interrupted."""
    refuse_default_secrets(settings)
    require_external_broker(settings)
    # Several workers may start together: only `db upgrade` migrates.
    with ServerRuntime(settings, migrate=False, scheduler=False, http=False) as runtime:
        announce("database", runtime.database.display_url)
        announce("mqtt", runtime.endpoint.url)
        settle_heap()
        _wait_for_signal()
    return 0


def db_upgrade(settings: Settings) -> int:
    """Migrate the database to the newest schema."""
    database = open_database(settings.resolved_database_url)
    try:
        announce("database", database.display_url)
        revision = upgrade(database)
        print(f"rollcall: database upgraded to revision {revision}", flush=True)
    finally:
        database.dispose()
    return 0


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:  # noqa: PLR0911 - one per command
    """Run the chosen subcommand."""
    if args.command == "serve":
        return serve(settings)
    if args.command == "ingest":
        return ingest(settings)
    if args.command == "demo":
        return run_demo(
            with_demo_secrets(settings), DemoOptions(members=args.members, once=args.once)
        )
    if args.command in provisioning_cli.COMMANDS:
        return provisioning_cli.run(args, settings)
    if args.command in audit_cli.COMMANDS:
        return audit_cli.run(args, settings)
    if args.command in web_cli.COMMANDS:
        return web_cli.run(args, settings)
    if args.command in importexport_cli.COMMANDS:
        return importexport_cli.run(args, settings)
    if args.command in cards_cli.COMMANDS:
        return cards_cli.run(args, settings)
    if args.command in kiosk_cli.COMMANDS:
        return kiosk_cli.run(args, settings)
    return db_upgrade(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `rollcall` console script."""
    args = build_parser().parse_args(argv)
    # The demo's own output is the point; its readers' logs would drown it.
    level = logging.WARNING if args.command == "demo" else logging.INFO
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return _dispatch(args, load_settings(args.config))
    except ConfigError as exc:
        print(f"rollcall: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except RollcallError as exc:
        print(f"rollcall: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 0
