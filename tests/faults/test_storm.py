"""A storm of 20,000 taps from four reader agents while the broker, the ingest worker, a reader
agent and (on PostgreSQL) the database connections are killed at random moments.

The invariant is checked against each reader's own record of what it stored (its
`[queued]` lines and its outbox): every tap is recorded exactly once, every
(member, session) that was tapped is attended and credited exactly once with the
session's points, and nothing is recorded or credited that no reader sent.

The fault schedule comes from a seeded random; the seed is printed, and setting
ROLLCALL_FAULT_SEED replays the same schedule (the timing of the processes
themselves cannot be replayed exactly).
"""

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.faults import fleet
from tests.support.mosquitto import Mosquitto
from tests.support.roster import seed_roster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POINTS = 2
READERS = 4
MEMBERS = 1250
TAPS_PER_READER = 5000  # each member's card four times at each reader: 20,000 in all
BURST, PAUSE = 50, 0.4  # pacing: the storm lasts long enough for the faults to land in it
FAULT_ROUNDS = 2  # each kind of fault this many times
DRAIN_TIMEOUT = 240.0


def fault_seed() -> int:
    """The seed of the fault schedule: ROLLCALL_FAULT_SEED, else a fresh one."""
    given = os.environ.get("ROLLCALL_FAULT_SEED")
    return int(given) if given else random.SystemRandom().randrange(1 << 32)


def schedule(rng: random.Random, span: float, kinds: list[str]) -> list[tuple[float, str]]:
    """Each kind of fault FAULT_ROUNDS times, at random moments within the storm."""
    kinds = kinds * FAULT_ROUNDS
    return sorted((rng.uniform(0.05 * span, 0.85 * span), kind) for kind in kinds)


def test_storm_with_kills_credits_every_tap_exactly_once(
    database_url: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    seed = fault_seed()
    print(f"fault schedule seed: ROLLCALL_FAULT_SEED={seed}")
    rng = random.Random(seed)
    fleet.upgrade(database_url)
    reader_ids = tuple(f"storm-{i}" for i in range(READERS))
    roster = seed_roster(database_url, members=MEMBERS, reader_ids=reader_ids, points=POINTS)
    session_of = dict(zip(reader_ids, roster.session_ids, strict=True))
    member_of_uid = dict(zip(roster.uids, range(MEMBERS), strict=True))
    repeats = TAPS_PER_READER // MEMBERS
    terminals = []
    for reader_id in reader_ids:
        script: list[str] = []
        for _ in range(repeats):
            round_ = list(roster.uids)
            rng.shuffle(round_)
            script += round_
        terminals.append(
            fleet.Terminal(reader_id, tmp_path, mosquitto.url, script, burst=BURST, pause=PAUSE)
        )
    span = TAPS_PER_READER / BURST * PAUSE
    # PostgreSQL as deployed at scale: two workers share the subscription, so a tap may
    # be redelivered to the other one, and the database alone must keep credit single.
    # An SQLite file has one worker and no connection to kill from outside.
    postgres = database_url.startswith("postgresql")
    kinds = ["broker", "ingest", "reader", *(["database"] if postgres else [])]
    faults = schedule(rng, span, kinds)
    print("faults:", ", ".join(f"{kind}@{at:.1f}s" for at, kind in faults))
    workers = [
        fleet.Ingest(
            tmp_path, database_url, mosquitto.url, client_id=f"ingest-{n}", shared=postgres
        )
        for n in range(2 if postgres else 1)
    ]

    with ExitStack() as stack:
        for worker in workers:
            worker.start()
            stack.callback(worker.stop)
        for terminal in terminals:
            terminal.start()
            stack.callback(terminal.stop)

        def broker() -> None:
            mosquitto.stop(kill=True)
            time.sleep(rng.uniform(0, 1.0))
            mosquitto.start()

        def ingest() -> None:
            worker = rng.choice(workers)
            worker.kill()
            time.sleep(rng.uniform(0, 1.0))
            worker.start()

        def reader() -> None:
            terminal = rng.choice(terminals)
            terminal.kill()
            time.sleep(rng.uniform(0, 1.0))
            terminal.start()

        def database() -> None:
            killed = fleet.terminate_connections(database_url)
            connections_killed.append(killed)
            print(f"terminated {killed} database connections")

        connections_killed: list[int] = []
        actions: dict[str, Callable[[], None]] = {
            "broker": broker,
            "ingest": ingest,
            "reader": reader,
            "database": database,
        }
        began = time.monotonic()
        for at, kind in faults:
            time.sleep(max(0.0, at - (time.monotonic() - began)))
            assert any(t.running for t in terminals), f"the storm was over before {kind}@{at:.1f}s"
            actions[kind]()
        for terminal in terminals:
            terminal.wait_drained(timeout=DRAIN_TIMEOUT)
        elapsed = time.monotonic() - began
        assert sum(w.runs for w in workers) == len(workers) + FAULT_ROUNDS
        # A database fault that met no connection would have tested nothing.
        assert not connections_killed or sum(connections_killed) > 0, connections_killed
    # Faults are expected to cost retries (warnings), never a failed batch left unanswered.
    assert [line for w in workers for line in w.errors()] == []
    print(f"storm drained after {elapsed:.1f}s")

    sent = {e: s for t in terminals for e, s in t.sent.items()}
    assert len(sent) == READERS * TAPS_PER_READER, "every script line became one stored tap"
    for terminal in terminals:
        assert fleet.pending_taps(terminal.outbox_path) == []

    db = fleet.stored(database_url)
    # Every tap a reader stored is recorded exactly once, as that reader's tap of that card.
    recorded = Counter(str(t["event_id"]) for t in db.taps)
    assert len(db.taps) == len(sent)
    assert not [e for e, n in recorded.items() if n != 1]
    assert set(recorded) == set(sent), "recorded taps no reader sent, or sent taps lost"
    for tap in db.taps:
        mine = sent[str(tap["event_id"])]
        assert (tap["reader_id"], tap["card_uid"]) == (mine.reader_id, mine.uid)
        assert tap["result"] in ("accepted", "duplicate"), tap

    # Exactly one credited check-in per (member, session) tapped, with the session's points.
    tapped = {(member_of_uid[s.uid], session_of[s.reader_id]) for s in sent.values()}
    accepted = Counter(
        (t["card_uid"], t["session_id"]) for t in db.taps if t["result"] == "accepted"
    )
    assert len(accepted) == len(tapped)
    assert set(accepted.values()) == {1}
    assert all(t["points"] == POINTS for t in db.taps if t["result"] == "accepted")
    member_ids = {t["member_id"]: t["card_uid"] for t in db.taps}
    attended = Counter(
        (member_of_uid[member_ids[a["member_id"]]], a["session_id"]) for a in db.attendance
    )
    assert set(attended) == tapped
    assert set(attended.values()) == {1}
    credits = Counter(entry["attendance_id"] for entry in db.ledger)
    assert set(credits) == {a["id"] for a in db.attendance}
    assert set(credits.values()) == {1}
    assert {(e["amount"], e["source"]) for e in db.ledger} == {(POINTS, "attendance")}
