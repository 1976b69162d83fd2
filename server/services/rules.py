"""Points rule versions: stored as JSON with an effective date, read back as a RuleBook.

Before any version is stored (and on days before the first one takes effect)
the base version applies: each activity type's fixed points for present or
late, in the activity type's category, no caps. It is the rule the readers
answer with at tap time, so closing a session under it changes nothing.
"""

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, select

from server.audit.chain import record_audit
from server.db.models import ActivityType, PointsRuleVersion, table_of
from server.domain.points import (
    FIXED_PER_ACTIVITY_V1,
    ActivityRule,
    Caps,
    DurationCredit,
    RuleBook,
    RuleSet,
    RuleVersion,
)
from server.errors import Conflict, InvalidRule
from server.services.unit_of_work import UnitOfWork

BASE_EFFECTIVE_FROM = date(1970, 1, 1)


def _activity_from_json(value: Any) -> ActivityRule:
    if not isinstance(value, dict):
        raise InvalidRule(f"an activity rule must be an object, not {value!r}")
    duration = value.get("duration")
    try:
        return ActivityRule(
            category=str(value["category"]),
            present=int(value["present"]),
            late=int(value["late"]),
            left_early=int(value.get("left_early", 0)),
            absent=int(value.get("absent", 0)),
            excused=int(value.get("excused", 0)),
            duration=None if duration is None else DurationCredit(**duration),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRule(f"bad activity rule {value!r}: {exc}") from exc


def rule_set_from_json(version: str, effective_from: date, body: dict[str, Any]) -> RuleSet:
    """A RuleSet from its stored JSON body; InvalidRule if the body is malformed."""
    activities = body.get("activities", {})
    caps = body.get("caps", {})
    default = body.get("default")
    if not isinstance(activities, dict) or not isinstance(caps, dict):
        raise InvalidRule("`activities` and `caps` must be objects keyed by code and category")
    try:
        cap_rules = {str(k): Caps(**v) for k, v in caps.items()}
    except TypeError as exc:
        raise InvalidRule(f"bad caps {caps!r}: {exc}") from exc
    return RuleSet(
        version=RuleVersion(version),
        effective_from=effective_from,
        activities={str(k): _activity_from_json(v) for k, v in activities.items()},
        default=None if default is None else _activity_from_json(default),
        caps=cap_rules,
    )


def rule_set_to_json(rules: RuleSet) -> dict[str, Any]:
    """The JSON body stored for a rule set."""
    return {
        "activities": {k: asdict(v) for k, v in rules.activities.items()},
        "default": None if rules.default is None else asdict(rules.default),
        "caps": {k: asdict(v) for k, v in rules.caps.items()},
    }


def base_rules(connection: Connection) -> RuleSet:
    """The tap-time rule as a rule set: fixed points per activity type, present or late."""
    rows = connection.execute(
        select(ActivityType.code, ActivityType.category, ActivityType.default_points)
    )
    return RuleSet(
        version=FIXED_PER_ACTIVITY_V1.version,
        effective_from=BASE_EFFECTIVE_FROM,
        activities={
            code: ActivityRule(category, present=points, late=points)
            for code, category, points in rows
        },
    )


@dataclass(frozen=True)
class StoredVersion:
    """A rule version as stored: its name, first day and JSON body."""

    version: str
    effective_from: date
    body: dict[str, Any]


def stored_versions(connection: Connection) -> list[StoredVersion]:
    """Every stored rule version by effective date (the base version is not stored)."""
    rows = connection.execute(
        select(
            PointsRuleVersion.version,
            PointsRuleVersion.effective_from,
            PointsRuleVersion.body,
        ).order_by(PointsRuleVersion.effective_from)
    )
    return [StoredVersion(*row) for row in rows]


def rule_book(connection: Connection) -> RuleBook:
    """Every stored version, after the base version."""
    stored = [
        rule_set_from_json(v.version, v.effective_from, v.body) for v in stored_versions(connection)
    ]
    return RuleBook((base_rules(connection), *stored))


def add_rule_version(connection: Connection, rules: RuleSet) -> None:
    """Store a new version; Conflict if its name or effective date is taken."""
    book = rule_book(connection)
    if rules.effective_from <= BASE_EFFECTIVE_FROM:
        raise InvalidRule(f"a rule version must take effect after {BASE_EFFECTIVE_FROM}")
    try:
        book.with_version(rules)
    except InvalidRule as exc:
        raise Conflict(str(exc)) from exc
    connection.execute(
        table_of(PointsRuleVersion)
        .insert()
        .values(
            version=rules.version,
            effective_from=rules.effective_from,
            body=rule_set_to_json(rules),
        )
    )


def store_rule_version(uow: UnitOfWork, rules: RuleSet, *, actor: str | None = None) -> None:
    """Store a new rule version in its own transaction; audited when an actor is named."""
    with uow:
        add_rule_version(uow.session.connection(), rules)
        if actor is not None:
            record_audit(
                uow.session,
                actor=actor,
                action="rules.version.create",
                target=f"rule version {rules.version}",
                details={"effective_from": rules.effective_from.isoformat()},
            )
        uow.commit()
