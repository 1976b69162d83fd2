"""PostgreSQL plans of the ingest's prepared lookups: index probes, never a table scan.

psycopg prepares a statement after a few executions and PostgreSQL then plans
it once for any parameters (a generic plan), with the statistics of that
moment: none on a new database (or with autovacuum off), where the planner
guesses a table's rows from its size. Each of these lookups names a few rows by
key; a plan that hashes a whole table instead costs a scan of every card on
every batch (0.35 ms a batch with 2,000 cards, measured in the tap storm).
"""

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine

from server.db import lookups
from server.db.engine import open_database
from server.db.migrate import upgrade
from server.services.unit_of_work import HeldConnection
from tests.support.roster import seed_roster

CARDS = 2000


@pytest.fixture
def roster_url(postgres_url: str) -> str:
    """A migrated PostgreSQL database: CARDS members with cards, checked in; never analysed."""
    database = open_database(postgres_url)
    upgrade(database)
    database.dispose()
    seed_roster(postgres_url, members=CARDS, reader_ids=["plan-reader"], points=1)
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO attendance (member_id, session_id, status, checked_in_at, created_at) "
            "SELECT members.id, sessions.id, 'present', now(), now() "
            "FROM members CROSS JOIN sessions"
        )
    engine.dispose()
    return postgres_url


def generic_plan(conn: Connection, sql: str, names: list[str], values: list[str]) -> dict[str, Any]:
    """EXPLAIN the generic plan of `sql` (psycopg's `%(name)s` style) prepared as psycopg does."""
    for index, name in enumerate(names, start=1):
        sql = sql.replace(f"%({name})s", f"${index}")
    assert not re.search(r"%\(\w+\)s", sql), sql
    conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
    conn.exec_driver_sql(f"PREPARE lookup AS {sql}")
    try:
        args = ", ".join(f"'{value}'" for value in values)
        text = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) EXECUTE lookup({args})").scalar_one()
    finally:
        conn.exec_driver_sql("DEALLOCATE lookup")
        conn.exec_driver_sql("RESET plan_cache_mode")
    plan = text if isinstance(text, list) else json.loads(text)
    return dict(plan[0]["Plan"])


def scans(node: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(node type, relation) of every scan of a table in the plan."""
    if "Relation Name" in node:
        yield node["Node Type"], node["Relation Name"]
    for child in node.get("Plans", []):
        yield from scans(child)


def lookups_to_plan(conn: Connection) -> list[tuple[str, lookups._ArraysQuery, list[str]]]:
    uid = conn.exec_driver_sql("SELECT uid FROM cards ORDER BY id LIMIT 1").scalar_one()
    return [
        ("cards", lookups._cards_of_keys(conn.dialect), ["{iso14443a}", f"{{{uid}}}"]),
        (
            "expected attendance",
            lookups._expected_attendance(conn.dialect),
            ["{iso14443a}", f"{{{uid}}}", "{1}"],
        ),
        ("attendance pairs", lookups._attendance_pairs(conn.dialect), ["{1}", "{1}"]),
    ]


@pytest.mark.parametrize("analysed", [False, True], ids=["no statistics", "analysed"])
def test_the_batch_lookups_probe_indexes_in_their_generic_plans(
    roster_url: str, analysed: bool
) -> None:
    engine = create_engine(roster_url)
    try:
        with engine.connect() as conn:
            if analysed:
                conn.exec_driver_sql("ANALYZE")
            for table in ("cards", "attendance"):
                count = conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
                assert count == CARDS, table
            planned = {}
            for name, query, values in lookups_to_plan(conn):
                names = [processor[0] for processor in query.arrays.processors]
                planned[name] = list(scans(generic_plan(conn, query.sql, names, values)))
    finally:
        engine.dispose()

    for name, found in planned.items():
        assert found, name
        assert all(kind in {"Index Scan", "Index Only Scan"} for kind, _ in found), (name, found)
    assert {table for _, table in planned["cards"]} == {"cards", "members"}
    assert {table for _, table in planned["expected attendance"]} == {"cards", "attendance"}


def test_the_batch_start_runs_its_lookups_on_generic_plans_and_only_those(
    roster_url: str,
) -> None:
    # Left to choose, PostgreSQL plans these lookups afresh on every batch: the plan
    # for the arrays at hand always looks cheaper than the generic one.
    database = open_database(roster_url)
    held = HeldConnection(database.writer)
    try:
        with database.engine.connect() as conn:
            uid, session_id = conn.exec_driver_sql(
                "SELECT cards.uid, attendance.session_id FROM cards "
                "JOIN attendance USING (member_id) ORDER BY cards.id LIMIT 1"
            ).one()
        batches = 20
        for _ in range(batches):
            with held:
                start = lookups.start_batch(
                    held.connection(), [("iso14443a", uid)], [("iso14443a", uid, session_id)]
                )
                assert start is not None
                assert ("iso14443a", uid) in start.cards
                assert len(start.attendance) == 1
                # The rest of the batch plans as PostgreSQL chooses.
                mode = held.connection().exec_driver_sql("SHOW plan_cache_mode").scalar_one()
                assert mode == "auto"
                # Committed as the worker's batches are: psycopg forgets what it
                # prepared when a transaction rolls back.
                held.commit()
        with held:
            prepared = held.connection().exec_driver_sql(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            )
            plans = {
                statement[:60]: (generic, custom)
                for statement, generic, custom in prepared
                if "unnest" in statement
            }
        # psycopg prepares a statement at its sixth use.
        assert len(plans) == 2, plans
        assert all(plan == (batches - 5, 0) for plan in plans.values()), plans
    finally:
        held.close()
        database.dispose()
