"""The audit chain on SQLite and PostgreSQL: it verifies, refuses changes, names tampering."""

import threading
from datetime import UTC, datetime
from itertools import pairwise

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from server.audit.chain import (
    GENESIS_HASH,
    AuditRecord,
    record_audit,
    record_audits,
    verify_chain,
)
from server.cli import main
from server.db.engine import Database

AT = datetime(2026, 11, 21, 6, 0, 0, 123456, tzinfo=UTC)


def _append(database: Database, count: int) -> None:
    for n in range(count):
        with database.write_sessions.begin() as session:
            record_audit(
                session,
                actor="cli:admin",
                action="reader.provision",
                target=f"hall-{n}",
                details={"room": "R101", "n": n, "名": "党员活动室"},
                at=AT,
            )


def test_several_rows_appended_at_once_chain_as_one_by_one(database: Database) -> None:
    _append(database, 1)
    records = [
        AuditRecord("cli:admin", "card.personalise", f"iso14443a:0{n}", {"n": n}) for n in range(3)
    ]
    with database.write_sessions.begin() as session:
        assert record_audits(session, []) == []
        entries = record_audits(session, records, at=AT)
        assert [e.id for e in entries] == [2, 3, 4]
    _append(database, 1)

    assert _verify(database) is None
    with database.engine.connect() as conn:
        rows = conn.execute(text("SELECT target, prev_hash, hash FROM audit_log ORDER BY id")).all()
    assert [r.target for r in rows] == [
        "hall-0",
        "iso14443a:00",
        "iso14443a:01",
        "iso14443a:02",
        "hall-0",
    ]
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(rows))


def _allow_changes(connection: Connection, backend: str) -> None:
    """Take the append-only trigger away, as someone with the database's keys could."""
    if backend == "sqlite":
        connection.execute(text("DROP TRIGGER audit_log_no_update"))
        connection.execute(text("DROP TRIGGER audit_log_no_delete"))
    else:
        connection.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change"))


def _verify(database: Database) -> int | None:
    with database.sessions() as session:
        return verify_chain(session)


def _cli_verify(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    monkeypatch.delenv("ROLLCALL_CONFIG", raising=False)
    monkeypatch.setenv("ROLLCALL_DATABASE_URL", database.url.render_as_string(False))
    code = main(["audit", "verify"])
    return code, capsys.readouterr().out


def test_rows_chain_from_genesis_and_verify(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(database, 3)

    with database.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, prev_hash, hash FROM audit_log ORDER BY id")).all()
    assert [r.id for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == GENESIS_HASH
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert _verify(database) is None
    assert _cli_verify(database, monkeypatch, capsys) == (0, "rollcall: audit chain OK, 3 rows\n")


def test_an_empty_log_verifies(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli_verify(database, monkeypatch, capsys) == (0, "rollcall: audit chain OK, 0 rows\n")


def test_audit_log_is_append_only(database: Database) -> None:
    _append(database, 1)

    for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), database.engine.begin() as conn:
            conn.execute(text(statement))
    assert _verify(database) is None


def test_a_row_changed_in_the_database_is_named(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(database, 4)
    with database.engine.begin() as conn:
        _allow_changes(conn, database.backend)
        conn.execute(text("UPDATE audit_log SET target = 'hall-x' WHERE id = 2"))

    assert _verify(database) == 2
    code, out = _cli_verify(database, monkeypatch, capsys)
    assert code == 1
    assert out == "rollcall: audit chain BROKEN at row 2 (of 4 rows)\n"


def test_a_row_rehashed_after_a_change_breaks_the_next_link(database: Database) -> None:
    _append(database, 3)
    with database.engine.begin() as conn:
        _allow_changes(conn, database.backend)
        # A forger who recomputes row 2's own hash still cannot fix row 3's prev_hash.
        conn.execute(text("UPDATE audit_log SET hash = :h WHERE id = 2"), {"h": "f" * 64})

    assert _verify(database) == 2


def test_a_deleted_row_is_named_by_its_successor(database: Database) -> None:
    _append(database, 3)
    with database.engine.begin() as conn:
        _allow_changes(conn, database.backend)
        conn.execute(text("DELETE FROM audit_log WHERE id = 2"))

    assert _verify(database) == 3


def test_concurrent_writers_keep_one_chain(database: Database) -> None:
    writers, each = 4, 5
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for n in range(each):
                with database.write_sessions.begin() as session:
                    record_audit(
                        session, actor=f"w{worker}", action="test", target=str(n), details={}
                    )
        except BaseException as exc:  # reported below, so the test names it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with database.engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
    assert count == writers * each
    assert _verify(database) is None
