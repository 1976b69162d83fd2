"""Alembic migrations on SQLite and PostgreSQL: they build exactly what the models describe."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import delete, inspect, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from server.db.engine import Database, open_database
from server.db.migrate import current_revision, downgrade, ensure_current, head_revision, upgrade
from server.db.models import Base, Card, LedgerEntry
from server.errors import SchemaOutOfDate
from server.sample import MinimalSeed, TapBuilder
from server.services.taps import record_taps
from server.services.unit_of_work import UnitOfWork

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
TABLES = {
    "org_units",
    "members",
    "member_org_history",
    "cards",
    "rooms",
    "readers",
    "activity_types",
    "sessions",
    "session_rooms",
    "session_audience",
    "taps",
    "unknown_cards",
    "attendance",
    "points_ledger",
    "session_series",
    "series_sessions",
    "session_roster",
    "leave_requests",
    "points_rule_versions",
    "publications",
    "audit_log",
}


def test_upgrade_from_empty_reaches_head_from_any_directory(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # migrations must not depend on the working directory
    db = open_database(database_url)
    try:
        with pytest.raises(SchemaOutOfDate, match="rollcall db upgrade"):
            ensure_current(db)

        assert upgrade(db) == "0011"
        assert head_revision() == "0011"

        ensure_current(db)
        assert set(inspect(db.engine).get_table_names()) >= TABLES
    finally:
        db.dispose()


def test_migrated_schema_matches_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)

    assert differences == []


def test_downgrade_to_base_and_up_again(database: Database) -> None:
    downgrade(database, "base")
    assert current_revision(database) is None
    assert not TABLES & set(inspect(database.engine).get_table_names())

    upgrade(database)
    assert current_revision(database) == "0011"


def test_upgrade_twice_is_a_no_op(database: Database) -> None:
    assert upgrade(database) == "0011"


def test_ledger_is_append_only(database: Database, seeded: MinimalSeed) -> None:
    record_taps(UnitOfWork(database.write_sessions), [TapBuilder.for_seed(seeded).received()])

    for statement in (update(LedgerEntry).values(amount=100), delete(LedgerEntry)):
        with pytest.raises(DBAPIError, match="append-only"), database.engine.begin() as conn:
            conn.execute(statement)
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT amount FROM points_ledger")).scalars().all() == [2]


def test_only_one_active_card_per_uid(database: Database, seeded: MinimalSeed) -> None:
    with pytest.raises(IntegrityError), database.write_sessions.begin() as db:
        db.add(Card(tech="iso14443a", uid=seeded.card_uid, member_id=seeded.member_id))

    with database.write_sessions.begin() as db:
        db.add(
            Card(tech="iso14443a", uid=seeded.card_uid, member_id=seeded.member_id, status="lost")
        )
        db.add(Card(tech="iso14443b", uid=seeded.card_uid, member_id=seeded.member_id))


def test_check_constraints_refuse_bad_values(database: Database, seeded: MinimalSeed) -> None:
    with pytest.raises(IntegrityError), database.write_sessions.begin() as db:
        db.add(Card(tech="magstripe", uid="01", member_id=seeded.member_id))
    with pytest.raises(IntegrityError), database.write_sessions.begin() as db:
        db.add(
            LedgerEntry(
                member_id=seeded.member_id, amount=5, source="adjustment", rule_version="manual"
            )
        )
