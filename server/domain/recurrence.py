"""Recurring sessions: RFC 5545 rules (RRULE) expanded into occurrences with python-dateutil.

Rules are read in the zone where the sessions are held (Asia/Shanghai by
default), so "the first Friday of every month at 14:30" stays 14:30 local time
whatever the offset, and occurrences come back in UTC.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from dateutil.rrule import rrule, rrulestr

from server.errors import InvalidRecurrence

MAX_OCCURRENCES = 1000


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of a recurring session, in UTC."""

    starts_at: datetime
    ends_at: datetime


def expand(
    rule: str,
    first_start: datetime,
    duration: timedelta,
    zone: tzinfo,
    *,
    until: datetime | None = None,
    limit: int = MAX_OCCURRENCES,
) -> list[Occurrence]:
    """Occurrences of `rule` (e.g. "FREQ=MONTHLY;BYDAY=1FR") from `first_start`.

    `until` (aware) bounds a rule with neither COUNT nor UNTIL; a rule that
    would give more than `limit` occurrences is refused rather than cut short.
    """
    if first_start.tzinfo is None or (until is not None and until.tzinfo is None):
        raise InvalidRecurrence("recurrence start and end must be timezone-aware")
    if duration <= timedelta(0):
        raise InvalidRecurrence(f"an occurrence must last longer than zero ({duration})")
    local_start = first_start.astimezone(zone).replace(tzinfo=None)
    text = rule.strip()
    if text.upper().startswith("RRULE:"):
        text = text[len("RRULE:") :]
    try:
        parsed = rrulestr(text, dtstart=local_start, forceset=False)
    except (ValueError, TypeError) as exc:
        raise InvalidRecurrence(f"not an RFC 5545 recurrence rule: {rule!r} ({exc})") from exc
    if not isinstance(parsed, rrule):
        raise InvalidRecurrence(f"one RRULE expected, got {rule!r}")
    local_until = None if until is None else until.astimezone(zone).replace(tzinfo=None)
    occurrences: list[Occurrence] = []
    for local in parsed:
        if local_until is not None and local > local_until:
            break
        if len(occurrences) == limit:
            raise InvalidRecurrence(
                f"rule {rule!r} gives more than {limit} occurrences; add COUNT or UNTIL"
            )
        start = local.replace(tzinfo=zone).astimezone(UTC)
        occurrences.append(Occurrence(start, start + duration))
    return occurrences
