"""Readers: what they report on their retained status topic, and what the server tells them."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, SQLColumnExpression, case, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from protocol import Config, ReaderState, Status, TapMode
from server.audit.chain import record_audit
from server.db.models import Reader, Room
from server.errors import NotFound, StorageError
from server.services.unit_of_work import UnitOfWork


def moved_forward(column: SQLColumnExpression[Any], value: Any) -> SQLColumnExpression[Any]:
    """`column` set to `value` unless it already holds a later one: for arrival times.

    A reader's `last_seen_at` is written by its status reports and by its taps'
    batches, which commit in any order.
    """
    return case((or_(column.is_(None), column < value), value), else_=column)


@dataclass(frozen=True)
class StatusReport:
    """A reader's status as received."""

    reader_id: str
    status: Status
    received_at: datetime


def record_statuses(uow: UnitOfWork, reports: Sequence[StatusReport]) -> int:
    """Store the latest status of each reader; return how many registered readers changed."""
    latest: dict[str, StatusReport] = {}
    for report in reports:
        latest[report.reader_id] = report  # arrival order: the last one is current
    if not latest:
        return 0
    changed = 0
    try:
        with uow:
            for reader_id, report in latest.items():
                status = report.status
                values: dict[str, object] = {
                    "state": status.state.value,
                    "last_status_at": report.received_at,
                    "boot_id": status.boot_id,
                    "agent_version": status.agent_version,
                    "card_source": status.source,
                    "outbox_depth": status.outbox_depth,
                    "oldest_pending_at": status.oldest_pending_at,
                    "clock_synced": status.clock_synced,
                }
                if status.state is ReaderState.ONLINE:
                    # An offline status is usually the broker's last will, sent later.
                    values["last_seen_at"] = moved_forward(Reader.last_seen_at, report.received_at)
                result = uow.session.execute(
                    update(Reader).where(Reader.reader_id == reader_id).values(**values)
                )
                changed += result.rowcount or 0  # type: ignore[attr-defined]
            uow.commit()
    except SQLAlchemyError as exc:
        raise StorageError(f"recording {len(latest)} reader statuses failed: {exc}") from exc
    return changed


@dataclass(frozen=True)
class ReaderChanges:
    """An administrator's changes to a reader: its name, room (by code) and mode."""

    name: str | None
    room_code: str | None
    mode: TapMode


def change_reader(uow: UnitOfWork, reader_id: str, changes: ReaderChanges, *, actor: str) -> None:
    """Rename a reader, move it to another room or change its mode; audited."""
    with uow:
        db = uow.session
        reader = db.scalars(select(Reader).where(Reader.reader_id == reader_id)).one_or_none()
        if reader is None:
            raise NotFound("reader", reader_id)
        room_id = None
        if changes.room_code:
            room_id = db.scalar(select(Room.id).where(Room.code == changes.room_code))
            if room_id is None:
                raise NotFound("room", changes.room_code)
        details = {
            field: {"from": before, "to": after}
            for field, before, after in (
                ("name", reader.name, changes.name or None),
                ("room_id", reader.room_id, room_id),
                ("mode", reader.mode, changes.mode.value),
            )
            if before != after
        }
        if not details:
            return
        reader.name = changes.name or None
        reader.room_id = room_id
        reader.mode = changes.mode.value
        record_audit(
            db, actor=actor, action="reader.change", target=f"reader {reader_id}", details=details
        )
        uow.commit()


def reader_configs(connection: Connection) -> dict[str, Config]:
    """The `config` each registered reader should run with: its mode and its room's name."""
    rows = connection.execute(
        select(Reader.reader_id, Reader.mode, Room.name).outerjoin(Room, Room.id == Reader.room_id)
    )
    return {
        reader_id: Config(mode=TapMode(mode), room=room_name or "")
        for reader_id, mode, room_name in rows
    }
