"""The live check-in screen in headless Chromium follows a burst of taps from a real reader.

Also in the split deployment (`rollcall ingest` beside `rollcall serve`, sharing
the taps over Mosquitto): check-ins the other process records reach the screen
through the broker.
"""

import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness
from tests.e2e.kiosk import screens
from tests.support.mosquitto import Mosquitto
from tests.support.processes import Process
from tests.support.roster import Roster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MEMBERS = 30
ACK = r"^\[(accepted|duplicate|unknown|error)\] "


def _follow_burst(
    page: Any, tmp_path: Path, *, database_url: str, mqtt_url: str, http: str, roster: Roster
) -> None:
    """Open the session's screen, tap every member once, and watch the counts follow."""
    session_id = roster.session_id
    url = screens.create_device(
        tmp_path, database_url, http, "--kind", "screen", "--session", str(session_id)
    )
    page.goto(url)
    assert page.url == f"{http}/live/sessions/{session_id}"
    page.wait_for_selector("#live[data-stream=open]", timeout=15_000)
    assert page.inner_text("#expected") == str(MEMBERS)
    assert page.inner_text("#arrived") == "0"
    agent = screens.reader(tmp_path, mqtt_url, "checkin", "burst-reader")
    try:
        agent.write("".join(f"{uid}\n" for uid in roster.uids))
        page.wait_for_function(
            f"document.getElementById('arrived').textContent === '{MEMBERS}'", timeout=60_000
        )
        agent.wait_until(lambda: agent.count(ACK) >= MEMBERS, timeout=30)
    finally:
        agent.close_stdin()
        agent.terminate()
    got = harness.totals(database_url, session_id)
    assert got.attendance == MEMBERS
    assert page.inner_text("#late") == "0"
    assert page.inner_text("#rate") == "100%"
    assert "测试支部" in page.inner_text(".branches")
    latest = page.locator("#latest li").all_inner_texts()
    assert len(latest) == 10
    assert all(re.search(r"测\*+\d", line) for line in latest), latest


def test_the_screen_follows_a_burst_of_taps(
    database_url: str, mosquitto: Mosquitto, tmp_path: Path, browser: Any
) -> None:
    harness.upgrade(database_url, tmp_path)
    roster = harness.seed(database_url, members=MEMBERS)
    screens.expect_roster_branch(database_url, roster.session_id)
    env = {
        "ROLLCALL_DATABASE_URL": database_url,
        "ROLLCALL_MQTT_URL": mosquitto.url,
        "ROLLCALL_COOKIE_SECURE": "false",
    }
    with harness.server(tmp_path, env) as (_, http, _):
        page = browser.new_page()
        try:
            _follow_burst(
                page,
                tmp_path,
                database_url=database_url,
                mqtt_url=mosquitto.url,
                http=http,
                roster=roster,
            )
        finally:
            page.close()


def test_split_deployment_events_cross_processes(
    postgres_url: str, mosquitto: Mosquitto, tmp_path: Path, browser: Any
) -> None:
    harness.upgrade(postgres_url, tmp_path)
    roster = harness.seed(postgres_url, members=MEMBERS)
    screens.expect_roster_branch(postgres_url, roster.session_id)
    shared = {
        "ROLLCALL_DATABASE_URL": postgres_url,
        "ROLLCALL_MQTT_URL": mosquitto.url,
        "ROLLCALL_INGEST_SHARED": "true",
    }
    worker = Process(
        [str(harness.BIN / "rollcall"), "ingest"],
        env={**shared, "ROLLCALL_INGEST_CLIENT_ID": "rollcall-ingest-1"},
        log_path=tmp_path / "ingest.log",
    )
    try:
        worker.wait_for(r"^rollcall: mqtt at ", timeout=60)
        env = {
            **shared,
            # Mosquitto hands a shared subscription's messages to its members in turn,
            # so about half the check-ins are recorded, and announced, by the other process.
            "ROLLCALL_INGEST_CLIENT_ID": "rollcall-ingest-server",
            "ROLLCALL_COOKIE_SECURE": "false",
        }
        with harness.server(tmp_path, env) as (_, http, _):
            page = browser.new_page()
            try:
                _follow_burst(
                    page,
                    tmp_path,
                    database_url=postgres_url,
                    mqtt_url=mosquitto.url,
                    http=http,
                    roster=roster,
                )
            finally:
                page.close()
    finally:
        worker.terminate()
