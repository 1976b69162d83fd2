"""The short Chinese texts a reader shows after a tap, one function per situation.

Times are shown in the organisation's time zone (passed in); everything else
in the server is UTC. Texts are cut to what the wire protocol allows, so an
over-long session title can never make an ack invalid.
"""

from dataclasses import dataclass
from datetime import datetime, tzinfo

from server.domain.attendance import AttendanceStatus
from server.domain.cards import CardStatus

MAX_TEXT = 200  # protocol Display: title and each line at most 200 characters
MAX_LINES = 8  # protocol Display: at most 8 lines


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


@dataclass(frozen=True)
class DisplayText:
    """A title and a few lines for the reader's screen."""

    title: str
    lines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "title", _clip(self.title))
        object.__setattr__(self, "lines", tuple(_clip(x) for x in self.lines[:MAX_LINES]))


def _clock(at: datetime, zone: tzinfo) -> str:
    return at.astimezone(zone).strftime("%H:%M")


def checked_in(
    name: str,
    session_title: str,
    *,
    points: int,
    status: AttendanceStatus,
    at: datetime,
    zone: tzinfo,
) -> DisplayText:
    """A first check-in was accepted: "签到成功 +2"."""
    title = f"签到成功 +{points}" if points else "签到成功"
    lines = [name, session_title]
    if status is AttendanceStatus.LATE:
        lines.append(f"迟到 {_clock(at, zone)}")
    return DisplayText(title, tuple(lines))


def already_checked_in(
    name: str, session_title: str, first_at: datetime | None, zone: tzinfo
) -> DisplayText:
    """The member had already checked in to this session."""
    lines = [name, session_title]
    if first_at is not None:
        lines.append(f"已于 {_clock(first_at, zone)} 签到")
    return DisplayText("重复签到", tuple(lines))


def not_expected(name: str, session_title: str) -> DisplayText:
    """The member is outside the session's audience and walk-ins are not allowed."""
    return DisplayText("不在本次参会名单", (name, session_title, "请联系会议组织人"))


def checked_out(name: str, session_title: str, at: datetime, zone: tzinfo) -> DisplayText:
    """A check-out was recorded."""
    return DisplayText("签退成功", (name, session_title, _clock(at, zone)))


def already_checked_out(
    name: str, session_title: str, at: datetime | None, zone: tzinfo
) -> DisplayText:
    """The member had already checked out of this session."""
    lines = [name, session_title]
    if at is not None:
        lines.append(f"已于 {_clock(at, zone)} 签退")
    return DisplayText("重复签退", tuple(lines))


def checkout_without_checkin(name: str, session_title: str) -> DisplayText:
    """A check-out tap from someone who never checked in."""
    return DisplayText("未签到，无法签退", (name, session_title))


def unknown_card(uid: str) -> DisplayText:
    """A card no member holds; it waits in the inbox for enrolment."""
    return DisplayText("未登记的卡", (f"卡号 {uid}", "请联系管理员登记"))


_BLOCKED_TITLES = {
    CardStatus.LOST: "卡已挂失",
    CardStatus.REVOKED: "卡已注销",
    CardStatus.REPLACED: "卡已更换",
}


def card_blocked(status: CardStatus) -> DisplayText:
    """A lost, revoked or replaced card was used."""
    return DisplayText(_BLOCKED_TITLES.get(status, "卡不可用"), ("请联系管理员",))


def member_inactive(name: str) -> DisplayText:
    """The card's holder is not an active member on the tap's date."""
    return DisplayText("卡已停用", (name, "请联系管理员"))


def no_session(room_name: str | None) -> DisplayText:
    """No session in this room has its check-in window open."""
    lines = (room_name,) if room_name else ("读卡器未分配会议室",)
    return DisplayText("当前没有可签到的会议", lines)


def unknown_reader(reader_id: str) -> DisplayText:
    """The reader is not registered with the server."""
    return DisplayText("读卡器未登记", (reader_id, "请联系管理员"))


def clock_ahead() -> DisplayText:
    """The tap is stamped in the future beyond tolerance: the reader's clock is wrong."""
    return DisplayText("时间异常", ("读卡器时钟超前", "请校准时间后重试"))


def clock_unsynced() -> DisplayText:
    """The tap is stamped long before it arrived by a reader whose clock is not synced."""
    return DisplayText("时间异常", ("读卡器时钟未同步", "请校准时间后重试"))


def balance(name: str, points: int) -> DisplayText:
    """A kiosk tap: the person's own points."""
    return DisplayText(f"{name} 积分 {points}", (name, f"当前积分 {points}"))


def card_filed(uid: str) -> DisplayText:
    """An enrolment tap of a new card: filed in the inbox for an administrator to bind."""
    return DisplayText("卡已收录", (f"卡号 {uid}", "等待管理员绑定"))


def card_enrolled(name: str, uid: str) -> DisplayText:
    """An enrolment tap of a new card, bound to `name`, the member an administrator picked."""
    return DisplayText("卡已绑定", (name, f"卡号 {uid}"))


def card_already_enrolled(name: str) -> DisplayText:
    """An enrolment tap of a card that already belongs to someone."""
    return DisplayText("卡已登记", (name,))


def malformed() -> DisplayText:
    """A message the server could not read."""
    return DisplayText("消息无效", ("请联系管理员",))


def server_error() -> DisplayText:
    """A tap the server could not record because of its own fault."""
    return DisplayText("系统错误", ("请稍后重试",))
