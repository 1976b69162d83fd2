"""A tap on a virtual PC/SC card, end to end: pcscd with vpcd, the reader agent on its
pcsc source, a real Mosquitto and `rollcall serve`, down to credited points and the ack.
"""

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.e2e import harness
from tests.integration.pcsc.pcscd import (
    READER_NAME,
    Pcscd,
    PcscdUnavailable,
    check_stack,
    machine_lock,
    wait_reader_empty,
    write_vpcd_config,
)
from tests.integration.pcsc.vicc import VirtualCard, contactless_responder, storage_card_atr
from tests.support.mosquitto import Mosquitto
from tests.support.processes import Process
from tests.support.roster import MEMBER_NAME, SESSION_TITLE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The seeded roster's first member, whose card the virtual card is, and the session.
WHO = f"{MEMBER_NAME.format(index=0)} \\| {SESSION_TITLE}"
ACCEPTED = rf"^\[accepted\] 签到成功 \+{harness.POINTS} — {WHO}$"
DUPLICATE = rf"^\[duplicate\] 重复签到 — {WHO} \| 已于 \d\d:\d\d 签到$"
WATCHING = f"watching PC/SC reader {READER_NAME!r}"
# Generous: the first ack also waits for the agent to start and reach the broker.
ACK_WAIT = 60.0


@pytest.fixture
def vpcd_reader(tmp_path: Path) -> Iterator[Pcscd]:
    """A pcscd of this test's own with vpcd as its only reader, its slot empty."""
    try:
        check_stack()
    except PcscdUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    base = tmp_path / "pcscd"
    daemon = Pcscd(write_vpcd_config(base / "reader.conf.d"), base / "pcscd.log")
    # In a run that also holds the PC/SC tests' session pcscd, this one takes over
    # /run/pcscd; their fixture starts theirs again when it finds it stopped.
    with machine_lock(), ExitStack() as cleanup:
        cleanup.callback(daemon.give_back)
        cleanup.callback(daemon.stop)
        try:
            daemon.start()
        except PcscdUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        yield daemon


def pcsc_agent(tmp_path: Path, mqtt_url: str) -> Process:
    """Start `rollcall-reader run` on the pcsc source, watching vpcd's reader, no debounce.

    No debounce so that the second tap reaches the server, which answers it as a duplicate.
    """
    config = tmp_path / "reader.toml"
    config.write_text(f'[pcsc]\nreader = "{READER_NAME}"\n')
    return Process(
        [
            str(harness.BIN / "rollcall-reader"),
            "run",
            "--config",
            str(config),
            "--id",
            harness.READER_ID,
            "--mqtt-url",
            mqtt_url,
            "--outbox",
            str(tmp_path / "outbox.sqlite3"),
            "--source",
            "pcsc",
            "--debounce",
            "0",
        ],
        log_path=tmp_path / "reader.log",
    )


def test_virtual_card_tap_is_credited_once_and_acked(
    vpcd_reader: Pcscd, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    del vpcd_reader  # only needed running
    database_url = f"sqlite:///{tmp_path / 'rollcall.sqlite3'}"
    harness.upgrade(database_url, tmp_path)
    roster = harness.seed(database_url, members=1)
    uid = roster.uids[0]
    card = VirtualCard(storage_card_atr(0x03), contactless_responder(bytes.fromhex(uid)))
    env = {"ROLLCALL_DATABASE_URL": database_url, "ROLLCALL_MQTT_URL": mosquitto.url}
    with harness.server(tmp_path, env) as (_, _, mqtt), ExitStack() as cleanup:
        assert mqtt == mosquitto.url
        agent = pcsc_agent(tmp_path, mosquitto.url)
        cleanup.callback(agent.terminate)
        cleanup.callback(card.remove)

        # Tap once the agent watches the reader, as a person would at a running terminal.
        log = tmp_path / "reader.log"
        agent.wait_until(lambda: WATCHING in log.read_text(errors="replace"), timeout=ACK_WAIT)
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
