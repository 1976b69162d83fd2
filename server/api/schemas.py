"""Response models of the HTTP API; they are what the OpenAPI schema shows."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorOut(_Out):
    """A failed request: a machine-readable code and a sentence for people."""

    error: str
    detail: str


class LedgerEntryOut(_Out):
    """One points ledger entry."""

    id: int
    amount: int
    source: str
    rule_version: str
    reason: str | None
    created_at: datetime
    session_id: int | None
    session_title: str | None


class MemberPointsOut(_Out):
    """A member's points balance and latest ledger entries, newest first."""

    employee_no: str
    name: str
    org_unit: str
    balance: int
    entries: list[LedgerEntryOut]


class AttendeeOut(_Out):
    """One member's attendance of a session."""

    employee_no: str
    name: str
    org_unit: str
    status: str
    checked_in_at: datetime | None
    checked_out_at: datetime | None


class SessionAttendanceOut(_Out):
    """A session and its attendance list in check-in order."""

    session_id: int
    title: str
    activity_type: str
    starts_at: datetime
    ends_at: datetime
    rooms: list[str]
    attendees: list[AttendeeOut]


class DatabaseHealthOut(_Out):
    """Whether the database answers."""

    ok: bool
    url: str


class IngestHealthOut(_Out):
    """Whether the ingest worker is connected, and its counters."""

    running: bool
    connected: bool
    queued: int
    counters: dict[str, int]


class BrokerHealthOut(_Out):
    """Which MQTT broker is in use."""

    kind: Literal["embedded", "external"]
    url: str


class HealthOut(_Out):
    """Health of the server's parts."""

    status: Literal["ok", "unavailable"]
    database: DatabaseHealthOut
    ingest: IngestHealthOut
    broker: BrokerHealthOut
