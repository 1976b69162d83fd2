"""Expected rosters: who a session expects, frozen from the membership at its start.

A member who moves branch mid-month is expected by the sessions of the branch
they belonged to when each session started, never by both or neither.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from server.domain.attendance import Audience, OrgTree
from server.errors import DomainError


@dataclass(frozen=True)
class Membership:
    """A member's time in one org unit: [valid_from, valid_to), open-ended while current."""

    member_id: int
    org_unit_id: int
    valid_from: datetime
    valid_to: datetime | None = None

    def __post_init__(self) -> None:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise DomainError(
                f"membership of member {self.member_id} ends before it starts "
                f"({self.valid_to.isoformat()} <= {self.valid_from.isoformat()})"
            )

    def covers(self, at: datetime) -> bool:
        """Whether the member was in this unit at `at`."""
        return self.valid_from <= at and (self.valid_to is None or at < self.valid_to)


@dataclass(frozen=True)
class ActiveDates:
    """The dates a member is active (joined, left); None means unbounded."""

    active_from: date | None = None
    active_to: date | None = None

    def covers(self, day: date) -> bool:
        """Whether the member is active on `day` (both ends inclusive)."""
        if self.active_from is not None and day < self.active_from:
            return False
        return self.active_to is None or day <= self.active_to


def unit_at(memberships: Iterable[Membership], member_id: int, at: datetime) -> int | None:
    """The org unit a member belonged to at `at`, or None if they belonged to none."""
    for membership in memberships:
        if membership.member_id == member_id and membership.covers(at):
            return membership.org_unit_id
    return None


def freeze_roster(
    audience: Audience,
    memberships: Iterable[Membership],
    tree: OrgTree,
    at: datetime,
    *,
    active: dict[int, ActiveDates] | None = None,
    local_day: date | None = None,
) -> frozenset[int]:
    """The members a session expects, from the membership in force at its start `at`.

    Listed members are expected; so is every member whose unit at `at` lies in
    an audience unit's subtree. An open audience (no units, no members) expects
    nobody: such a session takes walk-ins and marks no one absent. Members
    inactive on `local_day` (the session's date where it is held) are left out.
    """
    if audience.is_open:
        return frozenset()
    expected: set[int] = set(audience.member_ids)
    for membership in memberships:
        if not membership.covers(at):
            continue
        path = tree.path_to_root(membership.org_unit_id)
        if any(unit in audience.org_unit_ids for unit in path):
            expected.add(membership.member_id)
    if active is not None and local_day is not None:
        expected = {m for m in expected if active.get(m, ActiveDates()).covers(local_day)}
    return frozenset(expected)


def move(current: Membership, org_unit_id: int, at: datetime) -> tuple[Membership, Membership]:
    """Move a member: the current membership ends at `at`, a new one starts there."""
    if current.valid_to is not None:
        raise DomainError(f"membership of member {current.member_id} has already ended")
    if org_unit_id == current.org_unit_id:
        raise DomainError(f"member {current.member_id} is already in org unit {org_unit_id}")
    if at <= current.valid_from:
        raise DomainError(
            f"a move must come after the member joined the current unit "
            f"({current.valid_from.isoformat()})"
        )
    return (
        Membership(current.member_id, current.org_unit_id, current.valid_from, at),
        Membership(current.member_id, org_unit_id, at),
    )
