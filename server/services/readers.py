"""Reader state: what readers report on their retained status topic."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from protocol import ReaderState, Status
from server.db.models import Reader
from server.errors import StorageError
from server.services.unit_of_work import UnitOfWork


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
                    values["last_seen_at"] = report.received_at
                result = uow.session.execute(
                    update(Reader).where(Reader.reader_id == reader_id).values(**values)
                )
                changed += result.rowcount or 0  # type: ignore[attr-defined]
            uow.commit()
    except SQLAlchemyError as exc:
        raise StorageError(f"recording {len(latest)} reader statuses failed: {exc}") from exc
    return changed
