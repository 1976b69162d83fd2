"""A tap on a virtual PC/SC card, end to end: pcscd with vpcd, the reader agent on its
pcsc source, a real Mosquitto and `rollcall serve`, down to credited points and the ack.
"""

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.e2e import harness
from tests.integration.pcsc.pcscd import wait_reader_empty
from tests.integration.pcsc.vicc import VirtualCard, contactless_responder, storage_card_atr
from tests.support.mosquitto import Mosquitto
from tests.support.roster import MEMBER_NAME, SESSION_TITLE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The seeded roster's first member, whose card the virtual card is, and the session.
WHO = f"{MEMBER_NAME.format(index=0)} \\| {SESSION_TITLE}"
ACCEPTED = rf"^\[accepted\] 签到成功 \+{harness.POINTS} — {WHO}$"
DUPLICATE = rf"^\[duplicate\] 重复签到 — {WHO} \| 已于 \d\d:\d\d 签到$"
# Generous: the first ack also waits for the agent to start and reach the broker.
ACK_WAIT = 60.0


@pytest.fixture
def vpcd_reader(tmp_path: Path) -> Iterator[None]:
    """A pcscd of this test's own with vpcd as its only reader, its slot empty."""
    with harness.vpcd_reader(tmp_path):
        yield


@pytest.mark.usefixtures("vpcd_reader")  # only needed running
def test_virtual_card_tap_is_credited_once_and_acked(mosquitto: Mosquitto, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'rollcall.sqlite3'}"
    harness.upgrade(database_url, tmp_path)
    roster = harness.seed(database_url, members=1)
    uid = roster.uids[0]
    card = VirtualCard(storage_card_atr(0x03), contactless_responder(bytes.fromhex(uid)))
    env = {"ROLLCALL_DATABASE_URL": database_url, "ROLLCALL_MQTT_URL": mosquitto.url}
    with harness.server(tmp_path, env) as (_, _, mqtt), ExitStack() as cleanup:
        assert mqtt == mosquitto.url
        # The agent is up once it watches the reader: tap then, as a person would.
        agent = cleanup.enter_context(harness.pcsc_agent(tmp_path, mosquitto.url, timeout=ACK_WAIT))
        cleanup.callback(card.remove)

        card.insert()
        agent.wait_for(ACCEPTED, timeout=ACK_WAIT)
        card.remove()
        assert agent.count(rf"^\[card\] {uid}$") == 1
        first = harness.queued(agent)
        assert list(first.values()) == [uid]
        agent.wait_until(lambda: harness.outbox_depth(tmp_path) == 0, timeout=20)

        got = harness.totals(database_url, roster.session_id)
        assert (got.attendance, got.ledger_entries, got.taps) == (1, 1, 1)
        assert got.ledger_sum == harness.POINTS
        assert got.event_ids == frozenset(first)

        # The same card again, after pcscd has seen the reader empty: a new tap that the
        # server answers as a duplicate and credits nothing for.
        wait_reader_empty(timeout=10)
        card.insert()
        agent.wait_for(DUPLICATE, timeout=ACK_WAIT)
        card.remove()
        both = harness.queued(agent)
        assert len(both) == 2
        assert set(both.values()) == {uid}
        agent.wait_until(lambda: harness.outbox_depth(tmp_path) == 0, timeout=20)

        assert agent.count(r"^\[accepted\] ") == 1
        assert agent.count(r"^\[(duplicate|unknown|error)\] ") == 1
        got = harness.totals(database_url, roster.session_id)
        assert (got.attendance, got.ledger_entries, got.taps) == (1, 1, 2)
        assert got.ledger_sum == harness.POINTS
        assert got.event_ids == frozenset(both)
