"""Members and cards: pinyin search, card issue/replace/lost/revoke, the inbox, the audit log."""

import pytest
from sqlalchemy import select

from protocol import AckResult, TapMode
from server.db.models import AuditEntry, Card, Reader, UnknownCard
from server.sample import TapBuilder
from server.services.auth import Role
from server.services.taps import record_taps
from server.services.unit_of_work import UnitOfWork
from tests.support.console import make_user, sign_in

pytestmark = pytest.mark.integration


def _cards(database, member_id):
    with database.sessions() as db:
        return [
            (c.uid, c.status)
            for c in db.scalars(select(Card).where(Card.member_id == member_id).order_by(Card.id))
        ]


def test_search_finds_members_by_pinyin_initials_name_and_number(sqlite_console, branches) -> None:
    make_user(sqlite_console.database, "admin")
    sign_in(sqlite_console.client, "admin")
    client = sqlite_console.client
    by_initials = client.get("/admin/members", params={"q": "zsm"})
    assert "张三明" in by_initials.text
    assert "李四" not in by_initials.text
    assert "李四" in client.get("/admin/members", params={"q": "lisi"}).text
    assert "王五" in client.get("/admin/members", params={"q": "A003"}).text
    assert "赵六" in client.get("/admin/members", params={"q": "赵"}).text
    # HTMX asks for the results alone.
    fragment = client.get(
        "/admin/members",
        params={"q": "zsm"},
        headers={"HX-Request": "true", "HX-Target": "member-results"},
    )
    assert "<html" not in fragment.text
    assert "张三明" in fragment.text


def test_card_lifecycle_from_the_member_page(sqlite_console, branches) -> None:
    console = sqlite_console
    make_user(console.database, "admin")
    token = sign_in(console.client, "admin")
    member_id = branches.member_ids["A001"]
    client = console.client
    page = client.get(f"/admin/members/{member_id}")
    assert page.status_code == 200
    assert "张三明" in page.text
    ((old_uid, _),) = _cards(console.database, member_id)
    with console.database.sessions() as db:
        old_id = db.scalar(select(Card.id).where(Card.uid == old_uid))
    post = {"csrf_token": token}
    assert (
        client.post(
            f"/admin/members/{member_id}/cards/{old_id}/replace",
            data={**post, "uid": "04aa bb cc", "tech": "iso14443a"},
            follow_redirects=True,
        ).status_code
        == 200
    )
    assert _cards(console.database, member_id) == [(old_uid, "replaced"), ("04AABBCC", "active")]
    with console.database.sessions() as db:
        new_id = db.scalar(select(Card.id).where(Card.uid == "04AABBCC"))
    client.post(f"/admin/members/{member_id}/cards/{new_id}/lost", data=post)
    assert _cards(console.database, member_id)[-1] == ("04AABBCC", "lost")
    client.post(f"/admin/members/{member_id}/cards/{new_id}/revoke", data=post)
    assert _cards(console.database, member_id)[-1] == ("04AABBCC", "revoked")
    client.post(f"/admin/members/{member_id}/cards", data={**post, "uid": "04DDEEFF"})
    assert _cards(console.database, member_id)[-1] == ("04DDEEFF", "active")
    # A card active for someone else cannot be issued twice.
    other = branches.member_ids["A002"]
    refused = client.post(f"/admin/members/{other}/cards", data={**post, "uid": "04DDEEFF"})
    assert refused.status_code == 409
    with console.database.sessions() as db:
        actions = db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions[-4:] == ["card.replace", "card.lost", "card.revoked", "card.issue"]


def test_bind_an_unknown_card_in_one_step(sqlite_console, branches) -> None:
    console = sqlite_console
    make_user(console.database, "admin")
    token = sign_in(console.client, "admin")
    inbox = console.client.get("/admin/unknown-cards")
    assert branches.unknown_uid in inbox.text
    with console.database.sessions() as db:
        unknown_id = db.scalar(select(UnknownCard.id))
    done = console.client.post(
        f"/admin/unknown-cards/{unknown_id}/bind",
        data={"employee_no": "B002", "csrf_token": token},
        follow_redirects=True,
    )
    assert "已绑定" in done.text
    assert branches.unknown_uid not in done.text
    assert (branches.unknown_uid, "active") in _cards(console.database, branches.member_ids["B002"])


def _start_enrolment(console, branches) -> str:
    """An administrator picks A003 for the next card on the (now enroll-mode) reader."""
    make_user(console.database, "admin")
    token = sign_in(console.client, "admin")
    with console.database.write_sessions.begin() as db:
        reader = db.scalar(select(Reader).where(Reader.reader_id == branches.reader_id))
        assert reader is not None
        reader.mode = TapMode.ENROLL.value
    started = console.client.post(
        "/admin/unknown-cards/enrol",
        data={"employee_no": "A003", "reader_id": branches.reader_id, "csrf_token": token},
        follow_redirects=False,
    )
    status_url = started.headers["location"]
    assert "请在读卡器" in console.client.get(status_url).text
    return status_url


def test_enrol_by_tapping_on_an_enroll_mode_reader(sqlite_console, branches) -> None:
    console = sqlite_console
    status_url = _start_enrolment(console, branches)
    # Filed by the ingest from a tap as the pick was being made (none open yet).
    with console.database.write_sessions.begin() as db:
        db.add(
            UnknownCard(
                tech="iso14443a",
                uid="04C0FFEE",
                first_seen_at=console.clock.now(),
                last_seen_at=console.clock.now(),
                tap_count=1,
                last_reader_id=branches.reader_id,
                last_mode=TapMode.ENROLL.value,
            )
        )
    done = console.client.get(status_url, headers={"HX-Request": "true"})
    assert "04C0FFEE" in done.text
    assert "hx-trigger" not in done.text
    assert ("04C0FFEE", "active") in _cards(console.database, branches.member_ids["A003"])


def test_a_card_tapped_on_the_enroll_reader_is_bound_by_the_ingest(
    sqlite_console, branches
) -> None:
    """The page only reports it: the ingest binds the card as the tap is recorded."""
    console = sqlite_console
    status_url = _start_enrolment(console, branches)
    now = console.clock.now()

    taps = TapBuilder(branches.reader_id, "04C0FFEE", now)
    [outcome] = record_taps(
        UnitOfWork(console.database.write_sessions), [taps.received(mode=TapMode.ENROLL)]
    )

    assert outcome.result is AckResult.ACCEPTED
    assert ("04C0FFEE", "active") in _cards(console.database, branches.member_ids["A003"])
    done = console.client.get(status_url, headers={"HX-Request": "true"})
    assert "已绑定卡片" in done.text
    assert "04C0FFEE" in done.text
    assert "hx-trigger" not in done.text


def test_audit_log_filters(sqlite_console, branches) -> None:
    console = sqlite_console
    make_user(console.database, "admin")
    make_user(console.database, "clerk", Role.AUDITOR)
    token = sign_in(console.client, "admin")
    member_id = branches.member_ids["A001"]
    console.client.post(
        f"/admin/members/{member_id}/cards", data={"uid": "0411", "csrf_token": token}
    )
    page = console.client.get("/admin/audit", params={"action": "card.issue"})
    assert page.text.count('data-test="audit-row"') == 1
    assert "user.create" not in page.text.split("<tbody>")[1]
    everything = console.client.get("/admin/audit", params={"verify": "1"})
    assert "哈希链完整" in everything.text
    assert everything.text.count('data-test="audit-row"') == 3
