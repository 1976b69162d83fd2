"""The strong card tier through record_taps on both backends: verdicts, labels, the clone inbox."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from protocol import AckResult, CardAuth, CardId, Tap
from server.audit.chain import verify_chain
from server.cli import main
from server.db.engine import Database
from server.db.models import (
    ActivityType,
    Attendance,
    AuditEntry,
    Card,
    CardKey,
    LedgerEntry,
    Room,
    SuspectedClone,
    TapRecord,
)
from server.domain.cardkeys import CardKeyring, card_response, challenge_for
from server.domain.cards import CardStatus
from server.sample import MinimalSeed, TapBuilder
from server.services.cardauth import (
    KeyVersionCount,
    KeyVersionsReport,
    key_versions_report,
    list_suspected_clones,
    personalise_card,
    set_activity_type_requirement,
    set_room_requirement,
)
from server.services.taps import ReceivedTap, TapPolicy, record_taps
from server.services.unit_of_work import UnitOfWork

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
OLD_MASTER = bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0")
MASTER = bytes.fromhex("8E1F2A93C4D5B6E7F8091A2B3C4D5E6F")
KEYRING = CardKeyring({1: OLD_MASTER, 2: MASTER}, current=2)
OLD_RING = CardKeyring({1: OLD_MASTER}, current=1)  # before the rotation
POLICY = TapPolicy(card_keys=KEYRING)


def answered(tap: Tap, key: bytes | None) -> Tap:
    """The tap as a reader sends it after challenging a card holding `key` (None: no answer)."""
    challenge = challenge_for(tap.event_id)
    response = card_response(key, challenge) if key is not None else bytes(16)
    auth = CardAuth(challenge=challenge.hex(), response=response.hex())
    card = CardId(tech=tap.card.tech, uid=tap.card.uid, auth=auth)
    return tap.model_copy(update={"card": card})


def record(
    database: Database, *taps: Tap, policy: TapPolicy = POLICY, at: datetime = NOW
) -> list[AckResult]:
    batch = [ReceivedTap(tap, at) for tap in taps]
    return [o.result for o in record_taps(UnitOfWork(database.write_sessions), batch, policy)]


def personalise(database: Database, seeded: MinimalSeed, ring: CardKeyring = KEYRING) -> bytes:
    """Issue the seeded card a key under `ring`'s current version; the key."""
    with database.write_sessions.begin() as session:
        made = personalise_card(session, ring, seeded.card_uid, actor="test")
    return made.key


def require_room(database: Database, seeded: MinimalSeed, *, required: bool = True) -> None:
    with database.write_sessions.begin() as session:
        room_code = session.scalar(select(Room.code).where(Room.id == seeded.room_id))
        assert room_code is not None
        set_room_requirement(session, room_code, required=required, actor="test")


def counts(database: Database) -> tuple[int, int, int]:
    with database.sessions() as db:
        return (
            int(db.scalar(select(func.count()).select_from(Attendance)) or 0),
            int(db.scalar(select(func.count()).select_from(LedgerEntry)) or 0),
            int(db.scalar(select(func.count()).select_from(SuspectedClone)) or 0),
        )


def tiers(database: Database) -> list[tuple[str, str | None, bool]]:
    with database.sessions() as db:
        rows = db.execute(
            select(TapRecord.result, TapRecord.card_tier, TapRecord.flagged).order_by(TapRecord.id)
        )
        return [(r, t, f) for r, t, f in rows]


def test_personalised_card_passes_in_a_strong_room_and_is_credited(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    key = personalise(database, seeded)
    require_room(database, seeded)

    assert record(database, answered(taps.tap(), key)) == [AckResult.ACCEPTED]
    assert counts(database) == (1, 1, 0)
    assert tiers(database) == [("accepted", "strong", False)]


@pytest.mark.parametrize("answer", ["none", "wrong key", "unkeyed clone"])
def test_a_card_that_does_not_prove_itself_is_refused_and_filed_as_a_clone(
    database: Database, seeded: MinimalSeed, taps: TapBuilder, answer: str
) -> None:
    personalise(database, seeded)
    require_room(database, seeded)
    tap = taps.tap()
    if answer == "wrong key":
        tap = answered(tap, bytes(range(16)))
    elif answer == "unkeyed clone":
        tap = answered(tap, None)

    assert record(database, tap) == [AckResult.REJECTED]
    assert counts(database) == (0, 0, 1)
    tier = "uid" if answer == "none" else "failed"
    assert tiers(database) == [("rejected", tier, True)]
    with database.sessions() as db:
        [clone] = list_suspected_clones(db)
        detail = db.scalar(select(TapRecord.detail))
    assert (clone.uid, clone.tap_count, clone.last_reader_id) == (
        seeded.card_uid,
        1,
        seeded.reader_id,
    )
    assert detail is not None
    assert detail.startswith("suspected clone")


def test_an_answer_recorded_for_another_tap_is_not_accepted(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    key = personalise(database, seeded)
    require_room(database, seeded)
    recorded = answered(taps.tap(), key)
    replay = taps.tap().model_copy(update={"card": recorded.card})

    assert record(database, replay) == [AckResult.REJECTED]
    assert counts(database) == (0, 0, 1)


def test_uid_taps_are_accepted_and_labelled_where_the_tier_is_not_required(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    assert record(database, answered(taps.tap(), None)) == [AckResult.ACCEPTED]
    assert record(database, taps.tap()) == [AckResult.DUPLICATE]
    assert counts(database) == (1, 1, 0)
    assert tiers(database) == [("accepted", "failed", False), ("duplicate", "uid", False)]


def test_an_activity_type_can_require_the_tier(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    with database.write_sessions.begin() as session:
        code = session.scalar(
            select(ActivityType.code).where(ActivityType.id == seeded.activity_type_id)
        )
        assert code is not None
        set_activity_type_requirement(session, code, required=True, actor="test")

    assert record(database, taps.tap()) == [AckResult.REJECTED]
    key = personalise(database, seeded)
    assert record(database, answered(taps.tap(), key)) == [AckResult.ACCEPTED]
    assert counts(database) == (1, 1, 1)


def test_cards_personalised_under_an_older_master_key_still_verify(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    made = personalise(database, seeded, OLD_RING)
    require_room(database, seeded)

    assert record(database, answered(taps.tap(), made)) == [AckResult.ACCEPTED]


def key_versions(database: Database) -> list[tuple[int, int | None, datetime | None]]:
    """Every card_keys row's (issued, proven, proven at)."""
    with database.sessions() as db:
        rows = db.execute(
            select(CardKey.key_version, CardKey.proven_version, CardKey.proven_at).order_by(
                CardKey.card_id
            )
        )
        return [(issued, proven, at) for issued, proven, at in rows]


def test_a_card_issued_a_key_it_was_never_written_still_proves_its_old_one(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    first = personalise(database, seeded, OLD_RING)
    require_room(database, seeded)
    # A key file under version 2 is made, and the write at the terminal never happens.
    personalise(database, seeded)
    assert key_versions(database) == [(2, None, None)]
    # Never proved anything: it may hold version 1 as much as 2.
    with database.sessions() as db:
        unproven = key_versions_report(db, KEYRING)
    assert [v.needed_by for v in unproven.versions] == [1, 1]
    assert (unproven.never_proven, unproven.droppable()) == (1, [])

    assert record(database, answered(taps.tap(), first)) == [AckResult.ACCEPTED]
    assert tiers(database) == [("accepted", "strong", False)]
    assert counts(database) == (1, 1, 0)
    assert key_versions(database) == [(2, 1, NOW)]
    # The rotation is not done: the card still holds only version 1.
    with database.sessions() as db:
        report = key_versions_report(db, KEYRING)
    assert report == KeyVersionsReport(
        current=2,
        versions=(
            KeyVersionCount(1, configured=True, issued=0, proven=1, needed_by=1),
            KeyVersionCount(2, configured=True, issued=1, proven=0, needed_by=0),
        ),
        personalised=1,
        awaiting_proof=1,
        never_proven=0,
    )
    assert report.droppable() == []


def test_the_version_a_card_answers_under_is_kept_and_written_only_when_it_moves(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    first = personalise(database, seeded, OLD_RING)
    record(database, answered(taps.tap(), first))
    assert key_versions(database) == [(1, 1, NOW)]

    second = personalise(database, seeded)  # issued and, this time, written to the card
    later = NOW + timedelta(minutes=5)
    record(database, answered(taps.tap(), second), at=later)
    assert key_versions(database) == [(2, 2, later)]

    record(database, answered(taps.tap(), second), at=later + timedelta(minutes=5))
    assert key_versions(database) == [(2, 2, later)]
    assert [t for _, t, _ in tiers(database)] == ["strong", "strong", "strong"]
    with database.sessions() as db:
        report = key_versions_report(db, KEYRING)
    assert (report.personalised, report.awaiting_proof, report.droppable()) == (1, 0, [1])
    # A revoked card needs no key at all.
    with database.write_sessions.begin() as session:
        session.execute(update(Card).values(status=CardStatus.REVOKED.value))
    with database.sessions() as db:
        report = key_versions_report(db, KEYRING)
    assert (report.personalised, [v.issued for v in report.versions]) == (0, [0, 0])


def test_a_right_answer_from_a_card_never_personalised_here_is_not_strong(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    require_room(database, seeded)
    # Keyed under our master by some other means: no record of it being issued here.
    stray = KEYRING.card_key(seeded.card_uid)

    assert record(database, answered(taps.tap(), stray)) == [AckResult.REJECTED]
    assert tiers(database) == [("rejected", "failed", True)]
    assert key_versions(database) == []


def test_without_a_master_key_no_answer_can_pass_a_strong_room(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    key = personalise(database, seeded)
    require_room(database, seeded)

    assert record(database, answered(taps.tap(), key), policy=TapPolicy()) == [AckResult.REJECTED]
    require_room(database, seeded, required=False)
    assert record(database, taps.tap(), policy=TapPolicy()) == [AckResult.ACCEPTED]


def test_personalising_and_requiring_are_audited(database: Database, seeded: MinimalSeed) -> None:
    personalise(database, seeded)
    require_room(database, seeded)
    with database.sessions() as db:
        actions = list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions == ["card.personalise", "room.strong_tier"]


def test_cards_keys_says_which_cards_need_a_version_missing_from_the_keyring(
    database: Database,
    seeded: MinimalSeed,
    taps: TapBuilder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = personalise(database, seeded, OLD_RING)
    record(database, answered(taps.tap(), first))
    url = database.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("ROLLCALL_DATABASE_URL", url)
    # Version 1's line dropped too early.
    monkeypatch.setenv("ROLLCALL_CARD_MASTER_KEY", f"2:{MASTER.hex()}")
    capsys.readouterr()

    assert main(["cards", "keys"]) == 0

    assert capsys.readouterr().out.splitlines() == [
        "version\tconfigured\tissued\tproved\tneeded by",
        "1\tNO\t1\t1\t1",
        "2 (current)\tyes\t0\t0\t0",
        "1 active cards personalised, 0 of them issued a key they have not answered a "
        "challenge with yet",
        "version 1 is not in the keyring, yet 1 cards may hold only it: they fail the strong "
        "tier until re-personalised",
    ]


def test_reissuing_needs_its_directory_and_undoes_everything_if_a_file_fails(
    database: Database,
    seeded: MinimalSeed,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    personalise(database, seeded, OLD_RING)
    url = database.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("ROLLCALL_DATABASE_URL", url)
    monkeypatch.setenv("ROLLCALL_CARD_MASTER_KEY", f"1:{OLD_MASTER.hex()},2:{MASTER.hex()}")

    assert main(["cards", "personalise-key", "--reissue"]) != 0
    assert main(["cards", "personalise-key", "--uid", seeded.card_uid, "--out-dir", "x"]) != 0
    # The card's file cannot be written (a directory is in the way): nothing is issued.
    out = tmp_path / "keys"
    (out / f"iso14443a-{seeded.card_uid}.key").mkdir(parents=True)
    assert main(["cards", "personalise-key", "--reissue", "--out-dir", str(out)]) != 0
    assert key_versions(database) == [(1, None, None)]

    (out / f"iso14443a-{seeded.card_uid}.key").rmdir()
    assert main(["cards", "personalise-key", "--reissue", "--out-dir", str(out)]) == 0
    assert key_versions(database) == [(2, None, None)]
    with database.sessions() as db:
        audited = list(db.execute(select(AuditEntry.action, AuditEntry.details)))
        assert verify_chain(db) is None
    assert [(a, d["key_version"]) for a, d in audited] == [
        ("card.personalise", 1),
        ("card.personalise", 2),
    ]
    [written] = out.iterdir()
    assert "key_version = 2" in written.read_text()
    assert written.stat().st_mode & 0o077 == 0
