"""Provisioning readers: register one in the database, give it broker credentials, revoke them.

A reader's broker username is its reader id. Without TLS it gets a random
password in the broker's password file; with TLS a client certificate whose CN
is its id, signed by the site CA. The ACL's `%u` patterns need no entry per
reader. Revoking removes the password entry and puts the certificate's serial in
the CRL; the reader's row stays, since its taps refer to it. With signing, the
reader also gets an HMAC key for its taps' `sig`, stored in its row; revoking
takes the key away too. Both are written to the audit chain.
"""

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final, Literal
from urllib.parse import quote

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from protocol import TapMode, topics
from protocol.errors import MalformedMessage
from server.audit.chain import record_audit
from server.db.engine import Database
from server.db.models import Reader, Room, table_of
from server.errors import NotFound, ProvisioningError, StorageError
from server.provisioning.broker_files import (
    PASSWORD_PORT,
    SERVER_ACCOUNT,
    TLS_PORT,
    reload_broker,
)
from server.provisioning.certificates import CertificateAuthority, IssuedCertificate
from server.provisioning.passwords import PasswordFile, generate_password

CardSourceName = Literal["pcsc", "nfcpy", "simulated"]
SIGN_KEY_BYTES: Final = 32
# Where the files of a TLS reader go on the terminal (deploy/reader/reader.toml says the same).
TERMINAL_DIR: Final = PurePosixPath("/etc/rollcall")


@dataclass(frozen=True)
class CredentialPaths:
    """Where the broker's credentials live; a None path means that kind is not in use."""

    password_file: Path | None
    ca_dir: Path | None
    broker_pid_file: Path | None = None


@dataclass(frozen=True)
class BrokerAddress:
    """How readers reach the broker."""

    host: str
    password_port: int = PASSWORD_PORT
    tls_port: int = TLS_PORT


@dataclass(frozen=True)
class ReaderRequest:
    """What to provision: the reader, where it hangs, what it does, how it authenticates."""

    reader_id: str
    room_code: str
    mode: TapMode = TapMode.CHECKIN
    name: str | None = None
    source: CardSourceName = "pcsc"
    tls: bool = False
    sign: bool = False


@dataclass(frozen=True)
class ProvisionedReader:
    """A provisioned reader: its reader.toml and the secret it carries."""

    reader_id: str
    config_toml: str
    password: str | None
    certificate: IssuedCertificate | None
    ca_certificate_pem: bytes | None
    reload_note: str
    sign_key: str | None = None


@dataclass(frozen=True)
class ReaderListing:
    """One registered reader, as `rollcall readers list` shows it."""

    reader_id: str
    room_code: str | None
    mode: str
    credential: Literal["password", "certificate", "password+certificate", "none"]


def _check_reader_id(reader_id: str) -> str:
    try:
        topics.check_reader_id(reader_id)
    except MalformedMessage as exc:
        raise ProvisioningError(str(exc)) from None
    if reader_id == SERVER_ACCOUNT:
        raise ProvisioningError(f"{reader_id!r} is the server's broker account, not a reader id")
    return reader_id


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string: the same escapes, always quoted.
    return json.dumps(value, ensure_ascii=False)


def render_reader_config(
    request: ReaderRequest,
    broker: BrokerAddress,
    password: str | None,
    made_at: dt.datetime,
    sign_key: str | None = None,
) -> str:
    """The reader.toml a provisioned reader runs with."""
    host = f"[{broker.host}]" if ":" in broker.host else broker.host
    lines = [
        f"# Rollcall reader {request.reader_id}, provisioned {made_at:%Y-%m-%d %H:%M} UTC",
        "# by `rollcall readers provision`. Install it as /etc/rollcall/reader.toml,",
    ]
    if request.tls:
        url = f"mqtts://{host}:{broker.tls_port}"
        lines.append("# with ca.pem, reader.pem and reader.key (0600) beside it.")
    else:
        assert password is not None
        credentials = f"{quote(request.reader_id)}:{quote(password, safe='')}"
        url = f"mqtt://{credentials}@{host}:{broker.password_port}"
        lines.append("# mode 0600 owned by the agent's user: it holds the broker password.")
    if sign_key is not None:
        lines.append("# It holds the key the reader signs its taps with: keep it 0600.")
    lines += [
        "# deploy/reader/reader.toml lists every other setting.",
        f"id = {_toml_string(request.reader_id)}",
        f"mqtt_url = {_toml_string(url)}",
    ]
    if request.tls:
        lines += [
            f"tls_ca_file = {_toml_string(str(TERMINAL_DIR / 'ca.pem'))}",
            f"tls_cert_file = {_toml_string(str(TERMINAL_DIR / 'reader.pem'))}",
            f"tls_key_file = {_toml_string(str(TERMINAL_DIR / 'reader.key'))}",
        ]
    lines += [
        f"source = {_toml_string(request.source)}",
        f"mode = {_toml_string(request.mode.value)}",
    ]
    if sign_key is not None:
        lines.append(f"sign_key = {_toml_string(sign_key)}")
    return "\n".join(lines) + "\n"


def _has_credentials(reader_id: str, paths: CredentialPaths) -> str | None:
    if paths.password_file is not None and reader_id in PasswordFile(paths.password_file):
        return f"a password in {paths.password_file}"
    ca = _open_ca_if_any(paths)
    if ca is not None and ca.current_certificate(reader_id) is not None:
        return f"a certificate from the CA in {paths.ca_dir}"
    return None


def _open_ca_if_any(paths: CredentialPaths) -> CertificateAuthority | None:
    # A site without TLS readers has no CA, and need not have one.
    if paths.ca_dir is None or not (paths.ca_dir / "ca.key").exists():
        return None
    return CertificateAuthority.open(paths.ca_dir)


def provision_reader(
    database: Database,
    request: ReaderRequest,
    paths: CredentialPaths,
    broker: BrokerAddress,
    *,
    actor: str = "cli",
) -> ProvisionedReader:
    """Register the reader in its room (or move it there) and give it new broker credentials."""
    reader_id = _check_reader_id(request.reader_id)
    if (existing := _has_credentials(reader_id, paths)) is not None:
        raise ProvisioningError(
            f"reader {reader_id} already has {existing}: "
            f"run `rollcall readers revoke {reader_id}` first to issue new credentials"
        )
    ca: CertificateAuthority | None = None
    if request.tls:
        if paths.ca_dir is None:
            raise ProvisioningError("--tls needs the CA directory: set ROLLCALL_CA_DIR or --ca-dir")
        ca = CertificateAuthority.open(paths.ca_dir)
    elif paths.password_file is None:
        raise ProvisioningError(
            "no broker password file: set ROLLCALL_BROKER_PASSWORD_FILE or --password-file"
        )
    password: str | None = None
    certificate: IssuedCertificate | None = None
    sign_key = secrets.token_hex(SIGN_KEY_BYTES) if request.sign else None
    try:
        with database.write_sessions.begin() as session:
            room = session.scalars(select(Room).where(Room.code == request.room_code)).one_or_none()
            if room is None:
                raise NotFound("room", request.room_code)
            reader = session.scalars(
                select(Reader).where(Reader.reader_id == reader_id)
            ).one_or_none()
            if reader is None:
                reader = Reader(reader_id=reader_id)
                session.add(reader)
            reader.room_id = room.id
            reader.mode = request.mode.value
            if request.name is not None:
                reader.name = request.name
            session.flush()
            # Re-provisioning without --sign ends signing; a new key restarts replay tracking.
            readers = table_of(Reader)
            session.execute(
                update(readers)
                .where(readers.c.id == reader.id)
                .values(sign_key=sign_key, last_boot_id=None, last_seq=None)
            )
            record_audit(
                session,
                actor=actor,
                action="reader.provision",
                target=reader_id,
                details={
                    "room": request.room_code,
                    "mode": request.mode.value,
                    "credential": "certificate" if request.tls else "password",
                    "signed": sign_key is not None,
                },
            )
            # Credentials last, inside the transaction: if they cannot be written, nothing is.
            if ca is not None:
                certificate = ca.issue_client(reader_id)
            else:
                assert paths.password_file is not None
                password = generate_password()
                PasswordFile(paths.password_file).set(reader_id, password)
    except SQLAlchemyError as exc:
        _forget_credentials(reader_id, paths, ca, password is not None)
        raise StorageError(f"registering reader {reader_id} failed: {exc}") from exc
    # A new certificate needs no reload: the broker trusts whatever the CA signs.
    note = (
        reload_broker(paths.broker_pid_file) if password is not None else "no broker reload needed"
    )
    return ProvisionedReader(
        reader_id=reader_id,
        config_toml=render_reader_config(
            request, broker, password, dt.datetime.now(dt.UTC), sign_key
        ),
        password=password,
        certificate=certificate,
        ca_certificate_pem=ca.certificate_path.read_bytes() if ca is not None else None,
        reload_note=note,
        sign_key=sign_key,
    )


def _forget_credentials(
    reader_id: str, paths: CredentialPaths, ca: CertificateAuthority | None, had_password: bool
) -> None:
    # The database refused the reader: take back whatever credential was already written.
    if had_password and paths.password_file is not None:
        PasswordFile(paths.password_file).remove(reader_id)
    if ca is not None:
        ca.revoke(reader_id)


@dataclass(frozen=True)
class Revocation:
    """What revoking a reader took away."""

    reader_id: str
    password_removed: bool
    revoked_serial: int | None
    reload_note: str


def revoke_reader(
    database: Database, reader_id: str, paths: CredentialPaths, *, actor: str = "cli"
) -> Revocation:
    """Take away the reader's credentials: password entry, certificate and signing key."""
    _check_reader_id(reader_id)
    removed = paths.password_file is not None and PasswordFile(paths.password_file).remove(
        reader_id
    )
    ca = _open_ca_if_any(paths)
    serial = ca.revoke(reader_id) if ca is not None else None
    if not removed and serial is None:
        if not _is_registered(database, reader_id):
            raise NotFound("reader", reader_id)
        raise ProvisioningError(f"reader {reader_id} has no credentials to revoke")
    _record_revocation(database, reader_id, actor, removed, serial)
    # The broker reads a changed password file only when told to, and its CRL only at start.
    notes = [reload_broker(paths.broker_pid_file)] if removed else []
    if serial is not None:
        notes.append(
            "restart the broker, which reads its CRL only when it starts: "
            "`systemctl restart mosquitto` or `docker compose restart mosquitto`"
        )
    return Revocation(reader_id, removed, serial, "; ".join(notes))


def _record_revocation(
    database: Database, reader_id: str, actor: str, password_removed: bool, serial: int | None
) -> None:
    # Recorded after the credentials are gone, as files cannot join the transaction;
    # a failure to record is reported, not swallowed.
    readers = table_of(Reader)
    try:
        with database.write_sessions.begin() as session:
            session.execute(
                update(readers).where(readers.c.reader_id == reader_id).values(sign_key=None)
            )
            record_audit(
                session,
                actor=actor,
                action="reader.revoke",
                target=reader_id,
                details={
                    "password_removed": password_removed,
                    "certificate_serial": f"{serial:x}" if serial is not None else None,
                },
            )
    except SQLAlchemyError as exc:
        raise StorageError(
            f"reader {reader_id}'s broker credentials are revoked, but recording it failed: {exc}"
        ) from exc


def _is_registered(database: Database, reader_id: str) -> bool:
    try:
        with database.sessions() as session:
            found = session.scalars(select(Reader.id).where(Reader.reader_id == reader_id)).first()
    except SQLAlchemyError as exc:
        raise StorageError(f"looking up reader {reader_id} failed: {exc}") from exc
    return found is not None


def list_readers(database: Database, paths: CredentialPaths) -> list[ReaderListing]:
    """Every registered reader with its room, mode and the credential it holds now."""
    try:
        with database.sessions() as session:
            rows = session.execute(
                select(Reader.reader_id, Room.code, Reader.mode)
                .outerjoin(Room, Reader.room_id == Room.id)
                .order_by(Reader.reader_id)
            ).all()
    except SQLAlchemyError as exc:
        raise StorageError(f"listing readers failed: {exc}") from exc
    passwords = PasswordFile(paths.password_file).entries() if paths.password_file else {}
    ca = _open_ca_if_any(paths)
    listing = []
    for reader_id, room_code, mode in rows:
        has_password = reader_id in passwords
        has_certificate = ca is not None and ca.current_certificate(reader_id) is not None
        credential: Literal["password", "certificate", "password+certificate", "none"]
        if has_password and has_certificate:
            credential = "password+certificate"
        elif has_password:
            credential = "password"
        elif has_certificate:
            credential = "certificate"
        else:
            credential = "none"
        listing.append(ReaderListing(reader_id, room_code, mode, credential))
    return listing
