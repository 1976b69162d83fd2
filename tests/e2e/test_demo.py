"""`rollcall demo --once`: the embedded-defaults system runs end to end and says where to look."""

from pathlib import Path

import pytest

from tests.e2e import harness
from tests.support.ports import free_port
from tests.support.processes import Process

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_runs_readers_to_completion(tmp_path: Path) -> None:
    port = free_port()
    demo = Process(
        [str(harness.BIN / "rollcall"), "demo", "--once", "--members", "60"],
        env={"ROLLCALL_DATA_DIR": str(tmp_path / "data"), "ROLLCALL_HTTP_PORT": str(port)},
        log_path=tmp_path / "demo.log",
    )
    try:
        code = demo.wait(timeout=120)
    finally:
        demo.terminate()
    assert code == 0, (tmp_path / "demo.log").read_text(errors="replace")
    assert demo.wait_for(rf"^  API docs   http://127\.0\.0\.1:{port}/docs$")
    assert demo.wait_for(r"^  mqtt       mqtt://127\.0\.0\.1:\d+ \(embedded broker\)$")
    for reader_id in ("room-101", "room-102", "room-103"):
        assert demo.count(rf"^  {reader_id} +\[accepted\] 签到成功 \+\d") >= 10
    # The double tap within the debounce window is one tap, the later one a duplicate.
    assert demo.count(r"^  room-101 +\[duplicate\] ") == 1
    assert demo.count(r"^  room-102 +\[unknown\] 未登记的卡") == 1
    # The kiosk reader's taps look points up and record no attendance.
    assert demo.wait_for(rf"^  kiosk      http://127\.0\.0\.1:{port}/kiosk\?token=\S+ ")
    assert demo.wait_for(rf"^  live       http://127\.0\.0\.1:{port}/live\?token=\S+ ")
    kiosk_taps = demo.count(r"^  kiosk-1 +\[accepted\] \S+ 积分 \d+")
    assert kiosk_taps == 4
    summary = demo.wait_for(r"^Readers done: (\d+) taps recorded, (\d+) attendances")
    taps, attendances = int(summary.group(1)), int(summary.group(2))
    assert taps == attendances + 2 + kiosk_taps
