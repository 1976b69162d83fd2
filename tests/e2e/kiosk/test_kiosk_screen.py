"""The kiosk page in headless Chromium, driven by a real reader agent in kiosk mode.

Real Mosquitto, `rollcall serve`, `rollcall devices create` and `rollcall-reader run`
(simulated card source, uids on stdin) as separate processes: a tap shows the
person's figures as the database has them, then clears; an unknown card shows
where to register.
"""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, select

from server.db.models import Member
from server.kiosk.views import kiosk_view
from tests.e2e import harness
from tests.e2e.kiosk import screens
from tests.support.mosquitto import Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLEAR_SECONDS = 2
HINT = "请到党建工作部（行政楼302）登记"
ACK = r"^\[(accepted|duplicate|unknown|error)\] "
# The kiosk is a reader of its own, registered in kiosk mode: the server's config
# push would otherwise switch an agent started in kiosk mode to its reader's mode.
KIOSK_READER = "kiosk-e2e"


def _view_in_database(database_url: str, employee_no: str) -> Any:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            member_id = connection.scalar(
                select(Member.id).where(Member.employee_no == employee_no)
            )
            assert member_id is not None
            return kiosk_view(
                connection,
                member_id,
                now=datetime.now(UTC),
                zone=ZoneInfo("Asia/Shanghai"),
                mask="mask_middle",
            )
    finally:
        engine.dispose()


def test_a_tap_shows_the_figures_then_clears(
    database_url: str, mosquitto: Mosquitto, tmp_path: Path, browser: Any
) -> None:
    harness.upgrade(database_url, tmp_path)
    roster = harness.seed(database_url, members=10)
    screens.register_kiosk_reader(database_url, KIOSK_READER)
    env = {
        "ROLLCALL_DATABASE_URL": database_url,
        "ROLLCALL_MQTT_URL": mosquitto.url,
        "ROLLCALL_KIOSK_CLEAR_SECONDS": str(CLEAR_SECONDS),
        "ROLLCALL_KIOSK_REGISTER_HINT": HINT,
        "ROLLCALL_COOKIE_SECURE": "false",
    }
    with harness.server(tmp_path, env) as (_, http, _):
        # Points to show: the member checks in to the open session first.
        checkin = screens.reader(tmp_path, mosquitto.url, "checkin", "checkin-reader")
        try:
            checkin.write(f"{roster.uids[0]}\n")
            checkin.wait_until(lambda: checkin.count(ACK) >= 1, timeout=30)
        finally:
            checkin.close_stdin()
            checkin.terminate()

        url = screens.create_device(
            tmp_path, database_url, http, "--kind", "kiosk", "--reader", KIOSK_READER
        )
        page = browser.new_page()
        kiosk = screens.reader(tmp_path, mosquitto.url, "kiosk", "kiosk-reader", KIOSK_READER)
        try:
            page.goto(url)
            assert page.url == f"{http}/kiosk"  # the token left the address bar
            page.wait_for_selector("#kiosk[data-stream=open]", timeout=15_000)
            assert page.is_visible("text=请刷卡查询积分")

            kiosk.write(f"{roster.uids[0]}\n")
            page.wait_for_selector("#kiosk[data-state=member]", timeout=10_000)
            shown = {
                field: page.inner_text(f"[data-field={field}]")
                for field in ("month", "quarter", "year", "band")
            }
            expected = _view_in_database(database_url, roster.employee_nos[0])
            assert shown == {
                "month": str(expected.points_month),
                "quarter": str(expected.points_quarter),
                "year": str(expected.points_year),
                "band": expected.rank_band,
            }
            assert expected.points_month == harness.POINTS
            assert page.inner_text(".card .name") == expected.name == "测***0"
            assert "端到端测试大会" in page.inner_text("[data-field=recent]")
            # The reader's own console shows the server's answer as before.
            kiosk.wait_for(r"^\[accepted\] 测试000 积分 3", timeout=10)

            page.wait_for_selector("#kiosk[data-state=idle]", timeout=10_000)
            assert page.is_visible("text=请刷卡查询积分")
            assert page.inner_text("#shown") == ""

            kiosk.write("DEADBEEF\n")
            page.wait_for_selector("#kiosk[data-state=unknown]", timeout=10_000)
            assert HINT in page.inner_text("#shown")
            assert "尚未登记" in page.inner_text("#shown")
            page.wait_for_selector("#kiosk[data-state=idle]", timeout=10_000)
        finally:
            page.close()
            kiosk.close_stdin()
            kiosk.terminate()
