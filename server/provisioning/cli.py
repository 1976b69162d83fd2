"""The `rollcall readers`, `rollcall ca` and `rollcall broker` subcommands.

`readers provision` prints the reader's reader.toml on stdout (or writes it with
--output) and everything else on stderr, so its output can be piped as it is.
"""

import argparse
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from protocol import TapMode
from server.db.engine import Database, open_database
from server.db.migrate import ensure_current
from server.errors import ConfigError, ProvisioningError
from server.provisioning.broker_files import (
    LAYOUTS,
    PASSWORD_PORT,
    SERVER_ACCOUNT,
    write_broker_files,
)
from server.provisioning.certificates import CertificateAuthority, write_private
from server.provisioning.passwords import PasswordFile, generate_password
from server.provisioning.readers import (
    BrokerAddress,
    CredentialPaths,
    ProvisionedReader,
    ReaderRequest,
    list_readers,
    provision_reader,
    revoke_reader,
)
from server.settings import Settings

COMMANDS: Final = frozenset({"readers", "ca", "broker"})
AddConfigOption = Callable[[argparse.ArgumentParser], None]


def _actor() -> str:
    """Who runs the command, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name and no passwd entry, as in some containers
        return "cli"


def _note(text: str) -> None:
    print(f"rollcall: {text}", file=sys.stderr, flush=True)


def _credential_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-file",
        type=Path,
        help="Mosquitto password file ($ROLLCALL_BROKER_PASSWORD_FILE)",
    )
    parser.add_argument("--ca-dir", type=Path, help="site CA directory ($ROLLCALL_CA_DIR)")
    parser.add_argument(
        "--pid-file", type=Path, help="Mosquitto pid file to SIGHUP ($ROLLCALL_BROKER_PID_FILE)"
    )


def add_commands(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]", add_config: AddConfigOption
) -> None:
    """Add `readers`, `ca` and `broker` to the `rollcall` command's subcommands."""
    readers = commands.add_parser("readers", help="provision, revoke and list card readers")
    add_config(readers)
    actions = readers.add_subparsers(dest="readers_command", required=True, metavar="ACTION")
    provision = actions.add_parser("provision", help="register a reader and make its credentials")
    add_config(provision)
    provision.add_argument("reader_id", metavar="READER_ID")
    provision.add_argument("--room", required=True, metavar="ROOM_CODE", help="the room's code")
    provision.add_argument(
        "--mode", type=TapMode, choices=list(TapMode), default=TapMode.CHECKIN, help="(checkin)"
    )
    provision.add_argument("--name", help="a name people recognise the reader by")
    provision.add_argument(
        "--source", choices=["pcsc", "nfcpy", "simulated"], default="pcsc", help="(pcsc)"
    )
    provision.add_argument(
        "--tls", action="store_true", help="a client certificate instead of a password"
    )
    provision.add_argument(
        "--sign", action="store_true", help="give the reader a key to sign its taps with"
    )
    provision.add_argument(
        "--output", type=Path, metavar="FILE", help="write reader.toml here (default: stdout)"
    )
    provision.add_argument(
        "--broker-host", help="the broker as readers reach it ($ROLLCALL_BROKER_PUBLIC_HOST)"
    )
    provision.add_argument("--port", type=int, help="the broker's port (1883, or 8883 with --tls)")
    _credential_options(provision)
    revoke = actions.add_parser("revoke", help="take away a reader's broker credentials")
    add_config(revoke)
    revoke.add_argument("reader_id", metavar="READER_ID")
    _credential_options(revoke)
    listing = actions.add_parser("list", help="registered readers and their credentials")
    add_config(listing)
    _credential_options(listing)

    ca = commands.add_parser("ca", help="the site CA for TLS client certificates")
    add_config(ca)
    ca_actions = ca.add_subparsers(dest="ca_command", required=True, metavar="ACTION")
    init = ca_actions.add_parser("init", help="create the CA: key (0600), certificate, empty CRL")
    add_config(init)
    init.add_argument("--ca-dir", type=Path, help="where ($ROLLCALL_CA_DIR)")
    init.add_argument("--common-name", default="Rollcall site CA")
    broker_cert = ca_actions.add_parser("broker-cert", help="issue the broker's TLS certificate")
    add_config(broker_cert)
    broker_cert.add_argument("hosts", nargs="+", metavar="HOST", help="DNS names or IP addresses")
    broker_cert.add_argument("--ca-dir", type=Path, help="the CA ($ROLLCALL_CA_DIR)")

    broker = commands.add_parser("broker", help="the Mosquitto configuration")
    add_config(broker)
    broker_actions = broker.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    config = broker_actions.add_parser("config", help="write mosquitto.conf and the %%u ACL")
    add_config(config)
    config.add_argument("--layout", choices=sorted(LAYOUTS), default="debian", help="(debian)")
    config.add_argument("--output-dir", type=Path, required=True, metavar="DIR")
    account = broker_actions.add_parser(
        "account", help="give the server's broker account a new password; print its mqtt_url"
    )
    add_config(account)
    account.add_argument("--host", default="127.0.0.1", help="the broker as the server sees it")
    account.add_argument("--port", type=int, default=PASSWORD_PORT)
    account.add_argument(
        "--password-file",
        type=Path,
        help="Mosquitto password file ($ROLLCALL_BROKER_PASSWORD_FILE)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run a `readers`, `ca` or `broker` subcommand."""
    if args.command == "broker":
        return _broker(args, settings)
    if args.command == "ca":
        return _ca(args, settings)
    paths = CredentialPaths(
        password_file=args.password_file or settings.broker_password_file,
        ca_dir=args.ca_dir or settings.ca_dir,
        broker_pid_file=args.pid_file or settings.broker_pid_file,
    )
    database = _open(settings)
    try:
        if args.readers_command == "provision":
            return _provision(args, settings, database, paths)
        if args.readers_command == "revoke":
            revocation = revoke_reader(database, args.reader_id, paths, actor=_actor())
            if revocation.password_removed:
                _note(f"removed the password of {revocation.reader_id}")
            if revocation.revoked_serial is not None:
                _note(f"revoked certificate serial {revocation.revoked_serial:x} in the CRL")
            _note(revocation.reload_note)
            return 0
        for reader in list_readers(database, paths):
            print(
                f"{reader.reader_id}\t{reader.room_code or '-'}\t{reader.mode}\t{reader.credential}"
            )
        return 0
    finally:
        database.dispose()


def _broker(args: argparse.Namespace, settings: Settings) -> int:
    if args.broker_command == "config":
        for path in write_broker_files(LAYOUTS[args.layout], args.output_dir):
            _note(f"wrote {path}")
        return 0
    password_file: Path | None = args.password_file or settings.broker_password_file
    if password_file is None:
        raise ConfigError("no password file: set ROLLCALL_BROKER_PASSWORD_FILE or --password-file")
    password = generate_password()
    PasswordFile(password_file).set(SERVER_ACCOUNT, password)
    _note(f"set the password of {SERVER_ACCOUNT} in {password_file}; reload the broker")
    # The line for the server's environment file; the password is URL-safe as generated.
    print(f"ROLLCALL_MQTT_URL=mqtt://{SERVER_ACCOUNT}:{password}@{args.host}:{args.port}")
    return 0


def _open(settings: Settings) -> Database:
    database = open_database(settings.resolved_database_url)
    try:
        ensure_current(database)
    except BaseException:
        database.dispose()
        raise
    return database


def _ca(args: argparse.Namespace, settings: Settings) -> int:
    ca_dir: Path | None = args.ca_dir or settings.ca_dir
    if ca_dir is None:
        raise ConfigError("no CA directory: set ROLLCALL_CA_DIR or --ca-dir")
    if args.ca_command == "init":
        ca = CertificateAuthority.init(ca_dir, args.common_name)
        _note(f"created the CA in {ca_dir}; give readers and the broker {ca.certificate_path}")
        return 0
    CertificateAuthority.open(ca_dir).issue_broker(args.hosts)
    _note(f"wrote {ca_dir / 'broker.pem'} and {ca_dir / 'broker.key'} for {', '.join(args.hosts)}")
    return 0


def _provision(
    args: argparse.Namespace, settings: Settings, database: Database, paths: CredentialPaths
) -> int:
    host = args.broker_host or settings.broker_public_host
    if not host:
        raise ConfigError(
            "no broker host for the reader: set ROLLCALL_BROKER_PUBLIC_HOST or --broker-host"
        )
    if args.tls and args.output is None:
        raise ConfigError("--tls writes a key and certificates beside reader.toml: give --output")
    broker = (
        BrokerAddress(host, tls_port=args.port)
        if args.tls and args.port
        else BrokerAddress(host, password_port=args.port)
        if args.port
        else BrokerAddress(host)
    )
    request = ReaderRequest(
        reader_id=args.reader_id,
        room_code=args.room,
        mode=args.mode,
        name=args.name,
        source=args.source,
        tls=args.tls,
        sign=args.sign,
    )
    provisioned = provision_reader(database, request, paths, broker, actor=_actor())
    if args.output is None:
        sys.stdout.write(provisioned.config_toml)
        sys.stdout.flush()
    else:
        _write_reader_files(args.output, provisioned)
    _note(f"provisioned reader {provisioned.reader_id} in room {args.room}")
    if provisioned.sign_key is not None:
        _note("its taps must be signed: reader.toml holds its sign_key")
    _note(provisioned.reload_note)
    return 0


def _write_reader_files(output: Path, provisioned: ProvisionedReader) -> None:
    try:
        write_private(output, provisioned.config_toml.encode())
        _note(f"wrote {output}")
        if provisioned.certificate is not None and provisioned.ca_certificate_pem is not None:
            directory = output.parent
            (directory / "ca.pem").write_bytes(provisioned.ca_certificate_pem)
            (directory / "reader.pem").write_bytes(provisioned.certificate.certificate_pem)
            write_private(directory / "reader.key", provisioned.certificate.key_pem)
            _note(f"wrote ca.pem, reader.pem and reader.key (0600) in {directory}")
    except OSError as exc:
        raise ProvisioningError(f"cannot write the reader's files at {output}: {exc}") from exc
