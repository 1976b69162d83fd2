"""The console in headless Chromium: sign in, review a session and mark a leave, bind an
unknown card, switch the language."""

import re
from typing import Any

import pytest
from sqlalchemy import select

from server.db.models import Attendance, Card, LeaveRequestRecord, LedgerEntry
from tests.support.console import PASSWORD

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_sign_in_and_out(context: Any, served: Any) -> None:
    page = context.new_page()
    page.goto(f"{served.base_url}/admin/")
    page.wait_for_url(re.compile(r".*/admin/login.*"))
    page.fill("input[name=username]", "secretary")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit].primary")
    assert page.locator("[role=alert]").inner_text() == "用户名或密码错误。"
    page.fill("input[name=username]", "secretary")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r".*/admin/$"))
    assert page.locator("h1").inner_text() == "今日概览"
    assert "secretary" in page.locator(".userbox").inner_text()
    page.click("[data-test=logout]")
    page.wait_for_url(re.compile(r".*/admin/login$"))
    page.goto(f"{served.base_url}/admin/")
    page.wait_for_url(re.compile(r".*/admin/login.*"))


def test_review_a_session_and_mark_a_leave(page: Any, served: Any) -> None:
    branches = served.branches
    page.goto(f"{served.base_url}/admin/sessions/{branches.session_a}")
    assert page.locator("h1").inner_text() == "第一支部党员大会"
    row = page.locator("[data-test=row-A002]")
    assert row.locator("[data-test=status]").inner_text() == "缺席"
    assert page.locator("[data-test=count-absent]").inner_text() == "3"
    row.locator("[data-test=leave-A002]").click()
    row.get_by_role("textbox", name="请假事由").fill("外出培训")
    row.get_by_role("button", name="登记请假").click()
    page.wait_for_url(re.compile(r".*done=leave$"))
    assert page.locator("[role=status]").inner_text() == "已登记请假。"
    row = page.locator("[data-test=row-A002]")
    assert row.locator("[data-test=status]").inner_text() == "请假"
    assert "外出培训" in row.inner_text()
    assert page.locator("[data-test=count-absent]").inner_text() == "2"
    member_id = branches.member_ids["A002"]
    with served.database.sessions() as db:
        status = db.scalar(
            select(Attendance.status).where(
                Attendance.session_id == branches.session_a, Attendance.member_id == member_id
            )
        )
        leave = db.scalar(select(LeaveRequestRecord))
        ledger = [
            (e.amount, e.source)
            for e in db.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.member_id == member_id)
                .order_by(LedgerEntry.id)
            )
        ]
    assert status == "excused"
    assert leave is not None
    assert (leave.status, leave.approver, leave.reason) == ("approved", "secretary", "外出培训")
    # The absence's -2 stays in the ledger; a reversal cancels it.
    assert ledger == [(-2, "attendance"), (2, "reversal")]


def test_bind_an_unknown_card(page: Any, served: Any) -> None:
    uid = served.branches.unknown_uid
    page.goto(f"{served.base_url}/admin/")
    page.get_by_role("link", name="未登记卡", exact=True).click()
    row = page.locator(f"[data-test=unknown-{uid}]")
    row.locator("input[name=employee_no]").fill("B002")
    row.get_by_role("button", name="绑定").click()
    page.wait_for_url(re.compile(r".*done=bound$"))
    assert page.locator("[role=status]").inner_text() == "已绑定。"
    assert page.locator(f"[data-test=unknown-{uid}]").count() == 0
    page.goto(f"{served.base_url}/admin/members?q=qq")
    page.get_by_role("link", name="钱七").click()
    assert page.locator(f"[data-test=card-{uid}]").count() == 1
    with served.database.sessions() as db:
        card = db.scalar(select(Card).where(Card.uid == uid))
    assert card is not None
    assert (card.member_id, card.status) == (served.branches.member_ids["B002"], "active")


def test_switch_the_language(page: Any, served: Any) -> None:
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    page.click("[data-test=lang-en]")
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text() == "Today at a glance"
    page.get_by_role("link", name="Members & cards").click()
    assert page.locator("h1").inner_text() == "Members & cards"
    # The choice sticks across pages and requests.
    page.goto(f"{served.base_url}/admin/unknown-cards")
    assert page.locator("h1").inner_text() == "Unknown cards"
    page.click("[data-test=lang-zh_CN]")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "未登记卡"
