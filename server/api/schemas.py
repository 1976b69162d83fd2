"""Response models of the HTTP API; they are what the OpenAPI schema shows."""

from datetime import date, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from server.domain.lifecycle import SessionStatus

# The largest id of an INTEGER key on PostgreSQL (BIGINT keys: the ledger, taps).
ID_MAX: Final = 2**31 - 1
BIG_ID_MAX: Final = 2**63 - 1
# Points in one rule or adjustment, and in a cap: far beyond any real value, well inside INTEGER.
POINTS_MAX: Final = 1000
CAP_MAX: Final = 1_000_000
RecordId = Annotated[int, Field(ge=1, le=ID_MAX)]
# Days and moments the API accepts: wide enough for any record, narrow enough that
# time-zone shifts and period arithmetic never leave the calendar.
FIRST_DAY: Final = date(1970, 1, 1)
LAST_DAY: Final = date(2199, 12, 31)


def _in_calendar(value: date) -> date:
    day = value.date() if isinstance(value, datetime) else value
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"must lie between {FIRST_DAY} and {LAST_DAY}")
    return value


Day = Annotated[date, AfterValidator(_in_calendar)]
Moment = Annotated[AwareDatetime, AfterValidator(_in_calendar)]
Points = Annotated[int, Field(ge=-POINTS_MAX, le=POINTS_MAX)]


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


# --------------------------------------------------------------------------- requests


def _no_nul(value: Any) -> None:
    """ValueError if any text in a request body holds a NUL, which PostgreSQL cannot store."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text cannot contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key)
            _no_nul(item)
    elif isinstance(value, list):
        for item in value:
            _no_nul(item)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        _no_nul(data)
        return data


class SessionPlanIn(_In):
    """A session to plan; with `recurrence_rule` (RFC 5545 RRULE), one per occurrence."""

    title: str = Field(min_length=1, max_length=200)
    activity_type_code: str = Field(min_length=1, max_length=32)
    starts_at: Moment
    ends_at: Moment
    room_codes: list[str] = Field(default_factory=list, max_length=50)
    org_unit_codes: list[str] = Field(default_factory=list, max_length=200)
    employee_nos: list[str] = Field(default_factory=list, max_length=5000)
    checkin_open_minutes: int = Field(30, ge=0, le=1440)
    late_grace_minutes: int = Field(5, ge=0, le=1440)
    allow_walk_in: bool = True
    requires_checkout: bool = False
    min_stay_minutes: int = Field(0, ge=0, le=1440)
    recurrence_rule: str | None = Field(
        None, max_length=200, examples=["FREQ=MONTHLY;BYDAY=1FR;COUNT=12"]
    )
    recurrence_until: Moment | None = None
    series_title: str | None = Field(
        None, max_length=200, description="make the occurrences one series (any one fulfils it)"
    )


class SessionsOut(_Out):
    """Ids of the sessions created."""

    session_ids: list[int]


class SessionUpdateIn(_In):
    """Changes to a planned session; fields left out (or null) stay, lists replace the old ones."""

    title: str | None = Field(None, min_length=1, max_length=200)
    starts_at: Moment | None = None
    ends_at: Moment | None = None
    checkin_open_minutes: int | None = Field(None, ge=0, le=1440)
    late_grace_minutes: int | None = Field(None, ge=0, le=1440)
    allow_walk_in: bool | None = None
    requires_checkout: bool | None = None
    min_stay_minutes: int | None = Field(None, ge=0, le=1440)
    room_codes: list[str] | None = Field(None, max_length=50)
    org_unit_codes: list[str] | None = Field(None, max_length=200)
    employee_nos: list[str] | None = Field(None, max_length=5000)


class SessionSummaryOut(_Out):
    """A session in a list."""

    id: int
    title: str
    activity_type: str
    starts_at: datetime
    ends_at: datetime
    status: SessionStatus
    rooms: list[str]
    series_id: int | None


class SessionPageOut(_Out):
    """One page of sessions, earliest first, and how many match in all."""

    total: int
    items: list[SessionSummaryOut]


class SeriesDetailOut(_Out):
    """A series and its sessions, earliest first; attending any one fulfils it."""

    id: int
    title: str
    activity_type: str
    session_ids: list[int]


class SessionAudienceOut(_Out):
    """Who a session is for: org unit codes (with sub-units) and employee numbers; empty is open."""

    org_units: list[str]
    members: list[str]


class SessionOut(_Out):
    """A session with its check-in settings, rooms, audience and series."""

    id: int
    title: str
    activity_type: str
    starts_at: datetime
    ends_at: datetime
    status: SessionStatus
    checkin_open_minutes: int
    late_grace_minutes: int
    closes_at: datetime | None
    allow_walk_in: bool
    requires_checkout: bool
    min_stay_minutes: int
    recurrence_rule: str | None
    roster_frozen_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    closed_at: datetime | None
    rooms: list[str]
    audience: SessionAudienceOut
    series: SeriesDetailOut | None


class SeriesIn(_In):
    """Sessions to group into a series whose occurrences are interchangeable."""

    title: str = Field(min_length=1, max_length=200)
    session_ids: list[RecordId] = Field(min_length=2, max_length=100)


class SeriesOut(_Out):
    """The series created."""

    series_id: int


class RosterOut(_Out):
    """A session's expected roster, frozen at its start."""

    session_id: int
    member_ids: list[int]


class ReasonIn(_In):
    """A reason, required for every correction."""

    reason: str = Field(min_length=1, max_length=200)


class ClosedOut(_Out):
    """A closed session: counts by status, and how many ledger entries closing added."""

    session_id: int
    closed_at: datetime
    statuses: dict[str, int]
    ledger_entries: int


class LeaveIn(_In):
    """A leave request (请假) for a session."""

    employee_no: str = Field(min_length=1, max_length=32)
    reason: str = Field(min_length=1, max_length=200)


class LeaveOut(_Out):
    """A leave request and where it stands."""

    id: int
    status: str


class LeaveDecisionIn(_In):
    """Approve or reject a leave request."""

    approve: bool
    approver: str = Field(min_length=1, max_length=100)


class AdjustmentIn(_In):
    """A manual points adjustment."""

    amount: Points
    reason: str = Field(min_length=1, max_length=200)


class AppendedOut(_Out):
    """A ledger entry just appended, and the member's balance after it."""

    entry_id: int
    member_id: int
    amount: int
    source: str
    rule_version: str
    balance: int


class DurationCreditIn(_In):
    """Study credit: `points` per full `minutes`, at most `max_points`."""

    points: int = Field(ge=0, le=POINTS_MAX)
    minutes: int = Field(ge=1, le=1440)
    max_points: int | None = Field(None, ge=0, le=POINTS_MAX)


class ActivityRuleIn(_In):
    """What each status is worth for an activity type; `category` is its cap category."""

    category: str = Field(min_length=1, max_length=32)
    present: Points
    late: Points
    left_early: Points = 0
    absent: Points = 0
    excused: Points = 0
    duration: DurationCreditIn | None = None


class CapsIn(_In):
    """Caps on earnings in a category per local day, month and quarter."""

    day: int | None = Field(None, ge=0, le=CAP_MAX)
    month: int | None = Field(None, ge=0, le=CAP_MAX)
    quarter: int | None = Field(None, ge=0, le=CAP_MAX)


class RuleVersionIn(_In):
    """A new version of the points rules and the day it takes effect."""

    version: str = Field(min_length=1, max_length=64)
    effective_from: Day
    activities: dict[str, ActivityRuleIn]
    default: ActivityRuleIn | None = None
    caps: dict[str, CapsIn] = Field(default_factory=dict)


class RuleVersionOut(_Out):
    """A stored rule version."""

    version: str
    effective_from: date
    body: dict[str, Any]


class RescoreIn(_In):
    """Re-score closed sessions starting in [start, end) (local dates)."""

    start: Day
    end: Day
    apply: bool = Field(False, description="false: preview only")


class ChangeOut(_Out):
    """One credit a re-score changes."""

    member_id: int
    session_id: int
    old_amount: int
    old_version: str | None
    new_amount: int
    new_version: str | None
    delta: int


class RescoreOut(_Out):
    """The differences, and whether they were applied."""

    applied: bool
    changes: list[ChangeOut]


class RankedMemberOut(_Out):
    """A member's place in a ranking (equal points share a rank)."""

    rank: int
    employee_no: str
    name: str
    points: int


class StarMemberOut(_Out):
    """The member chosen."""

    employee_no: str
    name: str
    points: int
    attendance_rate: float
    late: int


class StarOut(_Out):
    """The star of the month and the published tie-breaks."""

    star: StarMemberOut | None
    tie_breaks: list[str]


class BenchmarkOut(_Out):
    """A branch's raw and fair (shrunk toward all branches) figures and places."""

    code: str
    name: str
    members: int
    attendance_rate: float
    fair_attendance_rate: float
    points_per_member: float
    fair_points_per_member: float
    attendance_rank: int
    points_rank: int


class PublicationOut(_Out):
    """Frozen quarterly figures and the corrections made since."""

    period: str
    published_at: datetime | None
    figures: dict[str, Any]
    adjustments: list[dict[str, Any]]


class MoveIn(_In):
    """Move a member to another org unit from a moment on."""

    org_unit_code: str = Field(min_length=1, max_length=32)
    at: Moment


# --------------------------------------------------------------------------- organisation


class OrgUnitIn(_In):
    """An org unit to create, under `parent_code` or at the top."""

    code: str = Field(min_length=1, max_length=32, pattern=r"^\S+$")
    name: str = Field(min_length=1, max_length=100)
    parent_code: str | None = Field(None, min_length=1, max_length=32)


class OrgUnitUpdateIn(_In):
    """A new name and/or parent for an org unit; `parent_code: null` moves it to the top."""

    name: str | None = Field(None, min_length=1, max_length=100)
    parent_code: str | None = Field(None, min_length=1, max_length=32)


class OrgUnitOut(_Out):
    """An org unit with its sub-units nested below it."""

    code: str
    name: str
    parent_code: str | None
    children: list["OrgUnitOut"] = Field(default_factory=list)


class MemberIn(_In):
    """A member to create."""

    employee_no: str = Field(min_length=1, max_length=32, pattern=r"^\S+$")
    name: str = Field(min_length=1, max_length=100)
    org_unit_code: str = Field(min_length=1, max_length=32)
    category: str = Field(min_length=1, max_length=32, examples=["正式党员"])
    active_from: Day | None = None
    active_to: Day | None = None


class MemberUpdateIn(_In):
    """Changes to a member; fields left out stay as they are (`active_to: null` clears it)."""

    name: str | None = Field(None, min_length=1, max_length=100)
    category: str | None = Field(None, min_length=1, max_length=32)
    active_to: Day | None = None


class MemberOut(_Out):
    """A member."""

    employee_no: str
    name: str
    org_unit: str
    category: str
    active_from: date | None
    active_to: date | None


class MemberCategoryIn(_In):
    """A member category to add; without a position it goes last."""

    name: str = Field(min_length=1, max_length=32, examples=["发展对象"])
    position: int | None = Field(None, ge=0, le=10000)


class MemberCategoryUpdateIn(_In):
    """A new name (members holding the category follow) and/or place in lists."""

    name: str | None = Field(None, min_length=1, max_length=32)
    position: int | None = Field(None, ge=0, le=10000)


class MemberCategoryOut(_Out):
    """A member category and how many members hold it."""

    name: str
    position: int
    members: int


class ActivityTypeIn(_In):
    """A user-defined activity type and its tap-time points."""

    code: str = Field(min_length=1, max_length=32, pattern=r"^\S+$")
    name: str = Field(min_length=1, max_length=100)
    category: str = Field("general", min_length=1, max_length=32)
    default_points: int = Field(ge=0, le=POINTS_MAX)


class ActivityTypeOut(_Out):
    """An activity type."""

    code: str
    name: str
    category: str
    default_points: int


class RoomIn(_In):
    """A room to create."""

    code: str = Field(min_length=1, max_length=32, pattern=r"^\S+$")
    name: str = Field(min_length=1, max_length=100)


class RoomOut(_Out):
    """A room."""

    code: str
    name: str
