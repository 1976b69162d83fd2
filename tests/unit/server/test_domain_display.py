"""The texts readers show after a tap."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from server.domain import display
from server.domain.attendance import AttendanceStatus
from server.domain.cards import CardStatus

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2025, 3, 3, 1, 7, tzinfo=UTC)  # 09:07 in Shanghai


def test_checked_in_shows_points_name_and_session() -> None:
    text = display.checked_in(
        "张三", "支部党员大会", points=2, status=AttendanceStatus.PRESENT, at=AT, zone=SHANGHAI
    )

    assert text.title == "签到成功 +2"
    assert text.lines == ("张三", "支部党员大会")


def test_late_check_in_shows_the_local_time() -> None:
    text = display.checked_in(
        "张三", "党课", points=2, status=AttendanceStatus.LATE, at=AT, zone=SHANGHAI
    )

    assert text.lines[-1] == "迟到 09:07"


def test_zero_points_has_no_plus() -> None:
    text = display.checked_in(
        "张三", "学习", points=0, status=AttendanceStatus.PRESENT, at=AT, zone=SHANGHAI
    )

    assert text.title == "签到成功"


def test_duplicate_says_when_the_first_check_in_was() -> None:
    text = display.already_checked_in("张三", "党课", AT, SHANGHAI)

    assert text.title == "重复签到"
    assert text.lines == ("张三", "党课", "已于 09:07 签到")


def test_refusals() -> None:
    assert display.unknown_card("04A1B2C3").title == "未登记的卡"
    assert display.card_blocked(CardStatus.LOST).title == "卡已挂失"
    assert display.card_blocked(CardStatus.REVOKED).title == "卡已注销"
    assert display.card_blocked(CardStatus.REPLACED).title == "卡已更换"
    assert display.no_session("一号会议室") == display.DisplayText(
        "当前没有可签到的会议", ("一号会议室",)
    )
    assert display.no_session(None).lines == ("读卡器未分配会议室",)
    assert display.unknown_reader("room-9").title == "读卡器未登记"
    assert display.clock_ahead().title == "时间异常"


def test_kiosk_balance() -> None:
    assert display.balance("李四", 42).title == "李四 积分 42"


def test_texts_are_clipped_to_what_the_protocol_allows() -> None:
    text = display.DisplayText("题" * 300, tuple(str(i) for i in range(12)))

    assert len(text.title) == display.MAX_TEXT
    assert text.title.endswith("…")
    assert len(text.lines) == display.MAX_LINES
