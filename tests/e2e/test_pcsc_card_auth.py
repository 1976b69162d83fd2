"""The strong card tier end to end: pcscd with vpcd and keyed virtual cards, `rollcall-reader`
personalising and challenging them, a real Mosquitto and `rollcall serve` deciding.

A card personalised with its diversified key is credited in a room that requires
the strong tier; a clone with the same UID and no key is refused there, flagged as
a suspected clone and credited nothing; once the room no longer requires the tier,
a UID-only card is accepted again, labelled as such. After a master key rotation,
every card is issued its new key at once and the reader writes them card after
card from a directory of key files.
"""

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from reader_agent.cardauth import CardKeyFile
from server.db.models import SuspectedClone, TapRecord
from server.domain.cardkeys import CardKeyring
from tests.e2e import harness
from tests.integration.pcsc.pcscd import wait_reader_empty
from tests.integration.pcsc.vicc import KEYED_CARD_ATR, KeyedCard, VirtualCard
from tests.support.mosquitto import Mosquitto
from tests.support.processes import Process
from tests.support.roster import MEMBER_NAME, SESSION_TITLE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOM = "R000"  # the seeded reader's room
MASTER_KEYS = "1:0F1E2D3C4B5A69788796A5B4C3D2E1F0\n2:8E1F2A93C4D5B6E7F8091A2B3C4D5E6F\n"
ACK_WAIT = 60.0


def accepted(index: int) -> str:
    who = f"{MEMBER_NAME.format(index=index)} \\| {SESSION_TITLE}"
    return rf"^\[accepted\] 签到成功 \+{harness.POINTS} — {who}$"


REFUSED = r"^\[error\] 卡片认证失败 — 疑似复制卡 \| 请联系管理员$"


@pytest.fixture
def vpcd_reader(tmp_path: Path) -> Iterator[None]:
    """A pcscd of this test's own with vpcd as its only reader, its slot empty."""
    with harness.vpcd_reader(tmp_path):
        yield


def rollcall(tmp_path: Path, env: dict[str, str], *args: str) -> Process:
    """Run one `rollcall` administration command to completion; fail on a non-zero exit."""
    log = tmp_path / "admin.log"
    proc = Process([str(harness.BIN / "rollcall"), *args], env=env, log_path=log)
    assert proc.wait(timeout=60) == 0, log.read_text(errors="replace")
    return proc


def reader_personalise(tmp_path: Path, *keys: str) -> Process:
    """`rollcall-reader personalise` on the vpcd reader, with `--key-file F` or `--key-dir D`."""
    return Process(
        [
            str(harness.BIN / "rollcall-reader"),
            "personalise",
            "--config",
            str(harness.pcsc_reader_config(tmp_path, challenge_response=True)),
            *keys,
        ],
        log_path=tmp_path / "personalise.log",
    )


def answered(writer: Process) -> list[str]:
    """What `rollcall-reader personalise` said about each card put on the reader."""
    return [line for line in writer.lines if line.startswith(("[personalised] ", "[refused] "))]


def tap(agent: Process, card: VirtualCard, expected: str) -> None:
    """Put the card on the reader until the agent shows the server's answer, then lift it."""
    before = agent.count(expected)
    card.insert()
    try:
        agent.wait_until(lambda: agent.count(expected) > before, timeout=ACK_WAIT)
    finally:
        card.remove()
        wait_reader_empty(timeout=10)


def tap_rows(database_url: str) -> list[tuple[str, str | None, str | None, bool]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    TapRecord.card_uid, TapRecord.result, TapRecord.card_tier, TapRecord.flagged
                ).order_by(TapRecord.id)
            )
            return [(u, r, t, f) for u, r, t, f in rows]
    finally:
        engine.dispose()


def clones(database_url: str) -> list[tuple[str, int]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(SuspectedClone.uid, SuspectedClone.tap_count))
            return [(u, n) for u, n in rows]
    finally:
        engine.dispose()


@pytest.mark.usefixtures("vpcd_reader")  # only needed running
def test_personalised_card_passes_and_its_clone_is_refused_in_a_strong_room(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'rollcall.sqlite3'}"
    harness.upgrade(database_url, tmp_path)
    roster = harness.seed(database_url, members=2)
    uid, other_uid = roster.uids
    key_store = tmp_path / "secrets" / "card-master.keys"
    key_store.parent.mkdir()
    key_store.write_text(MASTER_KEYS)
    env = {
        "ROLLCALL_DATABASE_URL": database_url,
        "ROLLCALL_DATA_DIR": str(tmp_path),
        "ROLLCALL_CARD_MASTER_KEY_FILE": str(key_store),
    }

    # Enrolment: the server derives the card's key; the reader writes it to the card.
    key_file = tmp_path / "card.key"
    rollcall(tmp_path, env, "cards", "personalise-key", "--uid", uid, "--out", str(key_file))
    assert key_file.stat().st_mode & 0o077 == 0
    genuine = KeyedCard(bytes.fromhex(uid))
    card = VirtualCard(KEYED_CARD_ATR, genuine.respond)
    personalise = reader_personalise(tmp_path, "--key-file", str(key_file))
    personalise.wait_for(r"^\[waiting\] ", timeout=30)
    card.insert()
    try:
        assert personalise.wait(timeout=30) == 0, personalise.lines
    finally:
        card.remove()
    assert personalise.count(rf"^\[personalised\] {uid} key_version=2$") == 1
    assert genuine.key is not None
    # Issued version 2; the card has not answered under it yet.
    keys = rollcall(tmp_path, env, "cards", "keys")
    assert keys.count(r"^2 \(current\)\tyes\t1\t0\t1$") == 1
    assert keys.count(r"1 active cards personalised, 1 of them issued a key they have not") == 1
    wait_reader_empty(timeout=10)
    rollcall(tmp_path, env, "rooms", "require-strong", ROOM)

    clone = VirtualCard(KEYED_CARD_ATR, KeyedCard(bytes.fromhex(uid)).respond)
    unkeyed = VirtualCard(KEYED_CARD_ATR, KeyedCard(bytes.fromhex(other_uid)).respond)
    server_env = {**env, "ROLLCALL_MQTT_URL": mosquitto.url}
    del server_env["ROLLCALL_DATA_DIR"]  # the harness gives the server its own
    with harness.server(tmp_path, server_env), ExitStack() as cleanup:
        agent = cleanup.enter_context(
            harness.pcsc_agent(tmp_path, mosquitto.url, challenge_response=True, timeout=ACK_WAIT)
        )

        # The clone first: refused, flagged, nothing credited; then the genuine card passes.
        tap(agent, clone, REFUSED)
        got = harness.totals(database_url, roster.session_id)
        assert (got.attendance, got.ledger_entries) == (0, 0)
        tap(agent, card, accepted(0))
        got = harness.totals(database_url, roster.session_id)
        assert (got.attendance, got.ledger_entries, got.ledger_sum) == (1, 1, harness.POINTS)

        # Where the tier is not required, a UID-only card is accepted and labelled.
        tap(agent, unkeyed, REFUSED)
        rollcall(tmp_path, env, "rooms", "require-strong", ROOM, "--off")
        tap(agent, unkeyed, accepted(1))
        agent.wait_until(lambda: harness.outbox_depth(tmp_path) == 0, timeout=20)

    assert tap_rows(database_url) == [
        (uid, "rejected", "uid", True),
        (uid, "accepted", "strong", False),
        (other_uid, "rejected", "uid", True),
        (other_uid, "accepted", "uid", False),
    ]
    assert sorted(clones(database_url)) == sorted([(uid, 1), (other_uid, 1)])
    got = harness.totals(database_url, roster.session_id)
    assert (got.attendance, got.ledger_entries, got.ledger_sum) == (2, 2, 2 * harness.POINTS)
    listing = rollcall(tmp_path, env, "cards", "clones")
    assert listing.count(rf"^iso14443a:{uid}\t") == 1
    # The genuine tap proved version 2: no card needs version 1's line any more.
    keys = rollcall(tmp_path, env, "cards", "keys")
    assert keys.count(r"^1\tyes\t0\t0\t0$") == 1
    assert keys.count(r"^2 \(current\)\tyes\t1\t1\t1$") == 1
    assert keys.count(r"no active card needs version 1 any more: its key line can go$") == 1


@pytest.mark.usefixtures("vpcd_reader")
def test_after_a_rotation_every_card_is_reissued_and_written_in_one_session(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'rollcall.sqlite3'}"
    harness.upgrade(database_url, tmp_path)
    uids = harness.seed(database_url, members=3).uids
    key_store = tmp_path / "card-master.keys"
    old_line, new_line = MASTER_KEYS.splitlines()
    key_store.write_text(old_line + "\n")
    env = {
        "ROLLCALL_DATABASE_URL": database_url,
        "ROLLCALL_DATA_DIR": str(tmp_path),
        "ROLLCALL_CARD_MASTER_KEY_FILE": str(key_store),
    }
    # Two cards personalised before the rotation (their key written as enrolment did);
    # the third never was, and is left alone.
    cards = {}
    for uid in uids[:2]:
        key_file = tmp_path / f"{uid}.key"
        rollcall(tmp_path, env, "cards", "personalise-key", "--uid", uid, "--out", str(key_file))
        cards[uid] = KeyedCard(bytes.fromhex(uid), key=CardKeyFile.read(key_file).key)
    key_store.write_text(old_line + "\n" + new_line + "\n")  # the rotation

    out_dir = tmp_path / "reissued"
    rollcall(tmp_path, env, "cards", "personalise-key", "--reissue", "--out-dir", str(out_dir))
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        f"iso14443a-{uid}.key" for uid in uids[:2]
    )
    assert out_dir.stat().st_mode & 0o077 == 0

    writer = reader_personalise(tmp_path, "--key-dir", str(out_dir))
    writer.wait_for(r"^\[waiting\] put the cards on the reader one at a time: 2 keys$")
    stranger = VirtualCard(KEYED_CARD_ATR, KeyedCard(bytes.fromhex(uids[2])).respond)
    # The second card first; a stranger; the second card again (written already:
    # refused, its erased file not touched twice); then the first.
    order = [(uids[1], True), (uids[2], False), (uids[1], False), (uids[0], True)]
    for turn, (uid, writes) in enumerate(order):
        card = cards.get(uid)
        virtual = stranger if card is None else VirtualCard(KEYED_CARD_ATR, card.respond)
        answers = len(answered(writer))
        virtual.insert()
        try:
            outcome = "personalised" if writes else "refused"
            writer.wait_until(lambda n=answers: len(answered(writer)) > n)
            said = answered(writer)[-1]
            assert said.startswith(f"[{outcome}] "), (turn, writer.lines)
            assert uid in said
        finally:
            virtual.remove()
            wait_reader_empty(timeout=10)
    assert writer.wait(timeout=30) == 0, writer.lines
    assert writer.count(r"^\[done\] every card in the directory is written$") == 1
    assert list(out_dir.iterdir()) == []  # each key erased once written

    keyring = CardKeyring({1: bytes.fromhex(old_line[2:]), 2: bytes.fromhex(new_line[2:])}, 2)
    for uid, card in cards.items():
        assert card.key == keyring.card_key(uid, 2)
    keys = rollcall(tmp_path, env, "cards", "keys")
    assert keys.count(r"^2 \(current\)\tyes\t2\t0\t2$") == 1
    # Not proved by a tap yet: version 1 stays needed until they are.
    assert keys.count(r"^1\tyes\t0\t0\t2$") == 1
