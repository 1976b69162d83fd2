"""Tap to credited points, end to end: server and reader agent as separate processes.

The invariant throughout: every tap the reader stored is recorded once, every known
card is credited exactly once, and nothing is credited twice — also when the reader
is SIGKILLed or the broker restarted in the middle.
"""

import json
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest

from server.db.engine import open_database
from server.services.auth import Role, create_api_token
from server.services.unit_of_work import UnitOfWork
from tests.e2e import harness
from tests.support.mosquitto import Mosquitto
from tests.support.processes import Process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ACK = r"^\[(accepted|duplicate|unknown|error)\] "
UNKNOWN_UIDS = tuple(f"DEAD{i:04X}BEEF" for i in range(5))


def get_json(url: str, database_url: str) -> dict[str, object]:
    """GET an API URL as a super admin's bearer token (made in the database)."""
    database = open_database(database_url)
    try:
        token = create_api_token(
            UnitOfWork(database.write_sessions), name="e2e", role=Role.SUPER_ADMIN
        ).secret
    finally:
        database.dispose()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_known_unknown_and_double_taps(
    database_url: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    harness.upgrade(database_url, tmp_path)
    roster = harness.seed(database_url, members=100)
    env = {"ROLLCALL_DATABASE_URL": database_url, "ROLLCALL_MQTT_URL": mosquitto.url}
    with harness.server(tmp_path, env) as (_, http, mqtt):
        assert mqtt == mosquitto.url
        agent = harness.reader(tmp_path, mosquitto.url)
        try:
            script = list(roster.uids)
            # Unknown cards and double taps mixed in among the first taps.
            for i, uid in enumerate(UNKNOWN_UIDS):
                script.insert(10 * i + 5, uid)
            script += [roster.uids[i] for i in range(0, 100, 10)]
            agent.write("".join(f"{uid}\n" for uid in script))
            agent.wait_until(lambda: agent.count(ACK) >= 115, timeout=60)
            assert agent.count(r"^\[accepted\] 签到成功 \+3") == 100
            assert agent.count(r"^\[duplicate\] ") == 10
            assert agent.count(r"^\[unknown\] ") == 5
            assert agent.count(r"^\[error\] ") == 0
            agent.wait_until(lambda: harness.outbox_depth(tmp_path) == 0, timeout=20)
        finally:
            agent.close_stdin()
            agent.terminate()

        got = harness.totals(database_url, roster.session_id)
        assert got.attendance == got.attendance_members == 100
        assert got.ledger_entries == 100
        assert got.ledger_sum == 100 * harness.POINTS
        assert got.taps == 115
        assert got.event_ids == frozenset(harness.queued(agent))
        assert got.unknown_cards == 5

        points = get_json(f"{http}/api/v1/members/{roster.employee_nos[0]}/points", database_url)
        assert points["balance"] == harness.POINTS
        attendance = get_json(
            f"{http}/api/v1/sessions/{roster.session_id}/attendance", database_url
        )
        assert len(attendance["attendees"]) == 100  # type: ignore[arg-type]


def feed_and_interrupt(
    tmp_path: Path,
    database_url: str,
    mosquitto: Mosquitto,
    interrupt: str,
    members: int = 60,
) -> None:
    """Tap every member once; interrupt midway; check exactly-once afterwards."""
    harness.upgrade(database_url, tmp_path)
    roster = harness.seed(database_url, members=members)
    env = {"ROLLCALL_DATABASE_URL": database_url, "ROLLCALL_MQTT_URL": mosquitto.url}
    stored: dict[str, str] = {}
    with harness.server(tmp_path, env) as (server, _, _), ExitStack() as readers:

        def start_reader(name: str) -> Process:
            """Start an agent that is stopped when the block ends, whatever happens."""
            agent = harness.reader(tmp_path, mosquitto.url, name)
            readers.callback(agent.terminate)
            readers.callback(agent.close_stdin)
            return agent

        agent = start_reader("reader-1")
        half = members // 2
        agent.write("".join(f"{uid}\n" for uid in roster.uids[: half // 2]))
        agent.wait_until(lambda: agent.count(ACK) == half // 2, timeout=30)

        if interrupt == "reader":
            # Freeze the server so the next taps are certainly stored and sent but
            # not yet acknowledged when the reader dies.
            server.pause()
            agent.write("".join(f"{uid}\n" for uid in roster.uids[half // 2 : half]))
            agent.wait_until(lambda: len(harness.queued(agent)) > half // 2, timeout=30)
            agent.kill()
            server.resume()
            stored.update(harness.queued(agent))
            assert harness.outbox_depth(tmp_path) > 0, "the kill should leave taps unacked"
            seen = set(stored.values())
            agent = start_reader("reader-2")
            # The person at the reader taps again whatever the killed agent never took.
            rest = [uid for uid in roster.uids if uid not in seen]
        else:
            agent.write("".join(f"{uid}\n" for uid in roster.uids[half // 2 : half]))
            mosquitto.restart(kill=True)  # the broker loses whatever it held in memory
            agent.wait_until(lambda: len(harness.queued(agent)) == half, timeout=30)
            rest = list(roster.uids[half:])
        agent.write("".join(f"{uid}\n" for uid in rest))
        agent.wait_until(
            lambda: harness.totals(database_url, roster.session_id).attendance == members,
            timeout=90,
        )
        agent.wait_until(lambda: harness.outbox_depth(tmp_path) == 0, timeout=60)
        stored.update(harness.queued(agent))

    got = harness.totals(database_url, roster.session_id)
    assert got.attendance == got.attendance_members == members
    assert got.ledger_entries == members
    assert got.ledger_sum == members * harness.POINTS
    missing = set(stored) - got.event_ids
    assert not missing, f"taps the reader stored but the server never recorded: {missing}"


def test_reader_killed_midway_loses_nothing_and_credits_once(
    database_url: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    feed_and_interrupt(tmp_path, database_url, mosquitto, "reader")


def test_broker_restarted_midway_loses_nothing_and_credits_once(
    database_url: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    feed_and_interrupt(tmp_path, database_url, mosquitto, "broker")


def test_embedded_defaults_sqlite_and_amqtt(tmp_path: Path) -> None:
    """No database URL, no broker URL: SQLite in the data dir and the in-process broker."""
    data = tmp_path / "server-data"
    with harness.server(tmp_path, {"ROLLCALL_DATA_DIR": str(data)}) as (_, http, mqtt):
        assert mqtt.startswith("mqtt://127.0.0.1:")
        assert not mqtt.endswith(":1883")
        database_url = f"sqlite:///{data / 'rollcall.sqlite3'}"
        roster = harness.seed(database_url, members=10)
        agent = harness.reader(tmp_path, mqtt)
        try:
            agent.write("".join(f"{uid}\n" for uid in (*roster.uids, "FEEDFACE")))
            agent.wait_until(lambda: agent.count(ACK) >= 11, timeout=60)
            assert agent.count(r"^\[accepted\] ") == 10
            assert agent.count(r"^\[unknown\] ") == 1
        finally:
            agent.close_stdin()
            agent.terminate()
        points = get_json(f"{http}/api/v1/members/{roster.employee_nos[3]}/points", database_url)
        assert points["balance"] == harness.POINTS
    got = harness.totals(database_url, roster.session_id)
    assert (got.attendance, got.ledger_entries, got.unknown_cards) == (10, 10, 1)
