"""Device tokens: what pairs a kiosk with a reader, or a live screen with a session or room.

A token is 32 random bytes (URL-safe base64) shown once, at creation; the
database keeps its SHA-256. A fast hash suffices here, unlike for passwords:
the token has 256 bits of entropy, so nothing can be guessed from the hash.
A token grants exactly one screen and its event stream; it is never a
console session or an API token, and those tables never see it.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from server.audit.chain import record_audit
from server.db.models import AttendanceSession, DeviceToken, Reader, Room
from server.errors import Conflict, DomainError, NotFound
from server.kiosk.errors import DeviceRefused
from server.services.unit_of_work import UnitOfWork

TOKEN_BYTES = 32


class DeviceKind(StrEnum):
    """What a device token opens."""

    KIOSK = "kiosk"
    SCREEN = "screen"


@dataclass(frozen=True)
class Device:
    """A device token's record (never the token itself)."""

    id: int
    kind: DeviceKind
    label: str
    reader_id: str | None
    session_id: int | None
    room_code: str | None
    room_id: int | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def path(self) -> str:
        """Where the device's screen lives (the token is appended once, at pairing)."""
        return "/kiosk" if self.kind is DeviceKind.KIOSK else "/live"


@dataclass(frozen=True)
class DeviceRequest:
    """A device to create: a kiosk with a reader, or a screen with a session or a room."""

    kind: DeviceKind
    label: str = ""
    reader_id: str | None = None
    session_id: int | None = None
    room_code: str | None = None


def hash_token(token: str) -> str:
    """The SHA-256 (hex) under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def _select() -> Select[DeviceToken, str | None, str | None]:
    return (
        select(DeviceToken, Reader.reader_id, Room.code)
        .outerjoin(Reader, Reader.id == DeviceToken.reader_id)
        .outerjoin(Room, Room.id == DeviceToken.room_id)
    )


def _device(row: DeviceToken, reader_id: str | None, room_code: str | None) -> Device:
    return Device(
        id=row.id,
        kind=DeviceKind(row.kind),
        label=row.label,
        reader_id=reader_id,
        session_id=row.session_id,
        room_code=room_code,
        room_id=row.room_id,
        created_by=row.created_by,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def create_device(
    uow: UnitOfWork, request: DeviceRequest, *, actor: str, now: datetime
) -> tuple[Device, str]:
    """Create a device token; returns the device and the token (shown this once only)."""
    kind = request.kind
    if kind is DeviceKind.KIOSK and (
        request.reader_id is None or request.session_id is not None or request.room_code
    ):
        raise DomainError("a kiosk is paired with a reader, and only with a reader")
    if kind is DeviceKind.SCREEN and (
        request.reader_id is not None or (request.session_id is None) == (not request.room_code)
    ):
        raise DomainError("a live screen is paired with one session or one room")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with uow:
        db = uow.session
        reader_pk = room_pk = None
        if request.reader_id is not None:
            reader_pk = db.scalar(select(Reader.id).where(Reader.reader_id == request.reader_id))
            if reader_pk is None:
                raise NotFound("reader", request.reader_id)
        if request.session_id is not None and db.get(AttendanceSession, request.session_id) is None:
            raise NotFound("session", request.session_id)
        if request.room_code:
            room_pk = db.scalar(select(Room.id).where(Room.code == request.room_code))
            if room_pk is None:
                raise NotFound("room", request.room_code)
        target = request.reader_id or request.room_code or f"session {request.session_id}"
        label = request.label.strip()[:100] or f"{kind.value} {target}"
        row = DeviceToken(
            kind=kind.value,
            token_hash=hash_token(token),
            label=label,
            reader_id=reader_pk,
            session_id=request.session_id,
            room_id=room_pk,
            created_by=actor,
            created_at=now,
        )
        db.add(row)
        db.flush()
        record_audit(
            db,
            actor=actor,
            action="device.create",
            target=f"device {row.id}",
            details={"kind": kind.value, "label": label, "paired_with": target},
            at=now,
        )
        device = _device(row, request.reader_id, request.room_code)
        uow.commit()
    return device, token


def revoke_device(uow: UnitOfWork, device_id: int, *, actor: str, now: datetime) -> Device:
    """Revoke a device token at once; Conflict if it was revoked already."""
    with uow:
        db = uow.session
        found = db.execute(_select().where(DeviceToken.id == device_id)).one_or_none()
        if found is None:
            raise NotFound("device", device_id)
        row, reader_id, room_code = found
        if row.revoked_at is not None:
            raise Conflict(f"device {device_id} is already revoked")
        row.revoked_at = now
        record_audit(
            db,
            actor=actor,
            action="device.revoke",
            target=f"device {device_id}",
            details={"kind": row.kind, "label": row.label},
            at=now,
        )
        db.flush()
        device = _device(row, reader_id, room_code)
        uow.commit()
    return device


def list_devices(db: Session) -> list[Device]:
    """Every device token, newest first."""
    rows = db.execute(_select().order_by(DeviceToken.id.desc())).all()
    return [_device(row, reader_id, room_code) for row, reader_id, room_code in rows]


def authenticate(db: Session, token: str | None, kind: DeviceKind) -> Device:
    """The live device a token belongs to, if it is of `kind`; DeviceRefused otherwise."""
    if not token or len(token) > 200:
        raise DeviceRefused("no device token")
    found = db.execute(_select().where(DeviceToken.token_hash == hash_token(token))).one_or_none()
    if found is None:
        raise DeviceRefused("unknown device token")
    row, reader_id, room_code = found
    if row.revoked_at is not None:
        raise DeviceRefused("device token revoked")
    if row.kind != kind.value:
        raise DeviceRefused(f"a {row.kind} token does not open a {kind.value}")
    return _device(row, reader_id, room_code)


def touch(uow: UnitOfWork, device_id: int, now: datetime) -> None:
    """Note when a device last opened its screen."""
    with uow:
        uow.session.execute(
            update(DeviceToken).where(DeviceToken.id == device_id).values(last_used_at=now)
        )
        uow.commit()
