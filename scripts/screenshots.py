"""Screenshots of the console's main pages with the demo's sample data, for the README.

Seeds a fresh SQLite database with `server.sample.seed_demo`, taps some cards,
starts `rollcall serve` and photographs the pages in headless Debian Chromium:

    python scripts/screenshots.py [--output docs/screenshots]
"""

import argparse
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from server.db.engine import open_database
from server.db.migrate import upgrade
from server.db.models import Member
from server.sample import TapBuilder, seed_demo
from server.services import review, sessions
from server.services.auth import Principal, Role
from server.services.taps import TapPolicy, record_taps
from server.services.unit_of_work import UnitOfWork
from server.services.users import create_user

ROOT = Path(__file__).resolve().parent.parent
ZONE = ZoneInfo("Asia/Shanghai")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP = {"width": 1366, "height": 900}
TABLET = {"width": 1024, "height": 1366}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def seed(url: str, password: str) -> dict[str, int]:
    """The demo organisation, some taps, a leave; console users. Ids worth photographing."""
    database = open_database(url)
    try:
        upgrade(database)
        now = datetime.now(UTC)
        demo = seed_demo(database.write_sessions, now, ZONE, members=120)
        batch = []
        for reader_id in demo.reader_ids:
            builder = TapBuilder(reader_id)
            cards = demo.cards_by_reader[reader_id]
            for index, card in enumerate(cards[: max(1, len(cards) * 2 // 3)]):
                at = now - timedelta(minutes=4) + timedelta(seconds=7 * index)
                batch.append(builder.received(uid=card.uid, at=at))
            for uid in demo.unknown_uids[:3]:
                batch.append(builder.received(uid=uid, at=now - timedelta(minutes=2)))
        record_taps(UnitOfWork(database.write_sessions), batch, TapPolicy(zone=ZONE))
        branch_session = demo.session_by_reader[demo.reader_ids[0]]
        roster = sessions.freeze(UnitOfWork(database.write_sessions), branch_session, ZONE)
        create_user(
            UnitOfWork(database.write_sessions),
            username="secretary",
            password=password,
            role=Role.SUPER_ADMIN,
            actor="setup",
        )
        boss = Principal(0, "secretary", Role.SUPER_ADMIN, None)
        with database.sessions() as db:
            checked = set(
                db.scalars(
                    select(Member.employee_no).where(
                        Member.employee_no.in_(
                            [c.employee_no for c in demo.cards_by_reader[demo.reader_ids[0]]]
                        )
                    )
                )
            )
            absent = list(
                db.scalars(
                    select(Member.employee_no)
                    .where(Member.id.in_(roster), Member.employee_no.not_in(checked))
                    .order_by(Member.employee_no)
                    .limit(2)
                )
            )
            member_id = db.scalar(select(Member.id).order_by(Member.id).limit(1))
        for employee_no, reason in zip(absent, ("外出培训", "倒班"), strict=False):
            review.mark_leave(
                UnitOfWork(database.write_sessions),
                boss,
                session_id=branch_session,
                employee_no=employee_no,
                reason=reason,
                now=now,
                zone=ZONE,
            )
        return {"session": branch_session, "member": member_id or 1}
    finally:
        database.dispose()


def serve(url: str, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`rollcall serve` on a free port; the process and its base URL."""
    port = _free_port()
    env = {
        **os.environ,
        "ROLLCALL_DATABASE_URL": url,
        "ROLLCALL_DATA_DIR": str(data_dir),
        "ROLLCALL_HTTP_PORT": str(port),
        "ROLLCALL_COOKIE_SECURE": "false",
        "PYTHONUNBUFFERED": "1",
    }
    rollcall = Path(sys.executable).parent / "rollcall"
    proc = subprocess.Popen(  # noqa: S603 (our own console script)
        [str(rollcall), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    for raw in proc.stdout:
        if re.match(rb"^rollcall: http at ", raw) or time.monotonic() > deadline:
            break
    base = f"http://127.0.0.1:{port}"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):  # noqa: S310 (http://)
                return proc, base
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("rollcall serve did not come up")


def photograph(base: str, ids: dict[str, int], password: str, output: Path) -> list[Path]:
    """Sign in and save one PNG per page; the files written."""
    from playwright.sync_api import sync_playwright

    output.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport=LAPTOP, locale="zh-CN", device_scale_factor=1)
        page = context.new_page()

        def shot(name: str, path: str, *, full: bool = True, target: Any = None) -> None:
            where = target or page
            where.goto(f"{base}{path}")
            where.wait_for_load_state("networkidle")
            file = output / f"{name}.png"
            where.screenshot(path=str(file), full_page=full)
            written.append(file)

        shot("login", "/admin/login", full=False)
        page.fill("input[name=username]", "secretary")
        page.fill("input[name=password]", password)
        page.click("button[type=submit].primary")
        page.wait_for_url(re.compile(r".*/admin/$"))
        shot("today", "/admin/")
        shot("session-review", f"/admin/sessions/{ids['session']}")
        shot("members", "/admin/members?q=z")
        shot("member", f"/admin/members/{ids['member']}")
        shot("unknown-cards", "/admin/unknown-cards")
        shot("audit", "/admin/audit")
        shot("users", "/admin/users")
        for name, path in (("sessions", "/admin/sessions"), ("rankings", "/admin/rankings")):
            response = page.request.get(f"{base}{path}")
            if response.ok:
                shot(name, path)
        page.click("[data-test=lang-en]")
        page.wait_for_load_state("networkidle")
        shot("today-en", "/admin/")
        page.click("[data-test=lang-zh_CN]")
        tablet = browser.new_context(viewport=TABLET, locale="zh-CN", is_mobile=True)
        tablet.add_cookies(context.cookies())
        tablet_page = tablet.new_page()
        shot("session-review-tablet", f"/admin/sessions/{ids['session']}", target=tablet_page)
        tablet.close()
        context.close()
        browser.close()
    return written


def main() -> int:
    """Seed, serve, photograph."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    password = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="rollcall-shots-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'rollcall.sqlite3'}"
        ids = seed(url, password)
        proc, base = serve(url, Path(tmp))
        try:
            for file in photograph(base, ids, password, args.output):
                print(f"wrote {file}")  # noqa: T201 (a command-line tool)
        finally:
            proc.terminate()
            proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
