"""A network cut between a reader agent and the broker: taps wait in the outbox, then all arrive.

The agent reaches Mosquitto through a TCP proxy the test cuts (every connection
dropped, new ones refused) and later restores. Taps made during the cut are
stored, the broker announces the reader offline (its last will), and after the
restore every tap is delivered and credited exactly once.
"""

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from server.db.models import Reader
from tests.faults import fleet
from tests.support.mosquitto import Mosquitto
from tests.support.roster import seed_roster
from tests.support.tcpproxy import TcpProxy

pytestmark = [pytest.mark.integration]

POINTS = 2
MEMBERS = 30
READER_ID = "cut-1"


def reader_state(database_url: str) -> tuple[str | None, int | None]:
    """The reader's last reported state and outbox depth, as the server recorded them."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(Reader.state, Reader.outbox_depth).where(Reader.reader_id == READER_ID)
            ).one()
    finally:
        engine.dispose()
    return row[0], row[1]


def test_taps_during_a_cut_are_delivered_after_it_and_credited_once(
    database_url: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    fleet.upgrade(database_url)
    roster = seed_roster(database_url, members=MEMBERS, reader_ids=(READER_ID,), points=POINTS)
    before, during, after = roster.uids[:10], roster.uids[10:20], roster.uids[20:]
    with (
        fleet.ingest(tmp_path, database_url, mosquitto.url),
        TcpProxy(mosquitto.host, mosquitto.port) as proxy,
    ):
        terminal = fleet.Terminal(
            READER_ID, tmp_path, f"mqtt://{proxy.host}:{proxy.port}", (), live=True
        )
        agent = terminal.start()
        try:
            terminal.tap(before)
            agent.wait_until(lambda: agent.count(r"^\[accepted\] ") == len(before))
            agent.wait_until(lambda: reader_state(database_url)[0] == "online")

            proxy.cut()
            terminal.tap(during)
            agent.wait_until(lambda: agent.count(r"^\[queued\] ") == len(before) + len(during))
            # The broker saw the connection die and published the reader's will.
            agent.wait_until(lambda: reader_state(database_url)[0] == "offline", timeout=30)
            # Nothing of the cut's taps can have reached the server; all wait in the outbox.
            assert len(fleet.pending_taps(terminal.outbox_path)) == len(during)
            assert agent.count(r"^\[accepted\] ") == len(before)

            proxy.restore()
            terminal.tap(after)
            agent.wait_until(lambda: agent.count(r"^\[accepted\] ") == MEMBERS, timeout=60)
            terminal.finish()
            terminal.wait_drained(timeout=30)
        finally:
            terminal.stop()
        assert proxy.connections >= 2, "the agent reconnected through the proxy"
        agent.wait_until(lambda: reader_state(database_url) == ("offline", 0), timeout=10)

    assert len(terminal.sent) == MEMBERS
    db = fleet.stored(database_url)
    assert Counter(str(t["event_id"]) for t in db.taps) == Counter(terminal.sent.keys())
    assert {t["result"] for t in db.taps} == {"accepted"}
    assert len(db.attendance) == len(db.ledger) == MEMBERS
    assert sum(e["amount"] for e in db.ledger) == MEMBERS * POINTS
