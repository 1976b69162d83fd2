"""Pairing devices: the console page (super admins), the CLI, revocation and the audit trail."""

import re
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select

from server.cli import main
from server.db.models import AuditEntry
from server.sample import seed_minimal
from server.services.auth import Role
from tests.support.console import make_user, sign_in
from tests.support.served import ApiClient

pytestmark = pytest.mark.integration


def _browser(client: ApiClient) -> httpx.Client:
    return httpx.Client(base_url=str(client.base_url), timeout=10)


def test_a_super_admin_pairs_a_kiosk_and_revokes_it(client: ApiClient) -> None:
    runtime = client.runtime
    seed = seed_minimal(runtime.database.write_sessions, datetime.now(UTC))
    make_user(runtime.database, "boss", Role.SUPER_ADMIN)
    with _browser(client) as admin:
        csrf = sign_in(admin, "boss")
        created = admin.post(
            "/admin/devices",
            data={
                "kind": "kiosk",
                "reader_id": seed.reader_id,
                "label": "大厅查询机",
                "csrf_token": csrf,
            },
        )
        assert created.status_code == 200
        url = re.search(r'data-test="device-url">([^<]+)<', created.text)
        assert url is not None
        token = url.group(1).split("token=", 1)[1]
        listing = admin.get("/admin/devices")
        assert "大厅查询机" in listing.text
        assert token not in listing.text  # shown once, never again

        with _browser(client) as kiosk:
            assert kiosk.get(url.group(1), follow_redirects=True).status_code == 200
            device_id = int(re.search(r'data-test="device-(\d+)"', listing.text).group(1))  # type: ignore[union-attr]
            revoked = admin.post(
                f"/admin/devices/{device_id}/revoke",
                data={"csrf_token": csrf},
                follow_redirects=False,
            )
            assert revoked.status_code == 303
            assert kiosk.get("/kiosk").status_code == 401  # at once
    with runtime.database.sessions() as db:
        trail = db.execute(
            select(AuditEntry.actor, AuditEntry.action).order_by(AuditEntry.id)
        ).all()
    assert [tuple(row) for row in trail if row[1].startswith("device.")] == [
        ("boss", "device.create"),
        ("boss", "device.revoke"),
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_only_super_admins_pair_and_org_admins_see_nothing(client: ApiClient) -> None:
    runtime = client.runtime
    seed = seed_minimal(runtime.database.write_sessions, datetime.now(UTC))
    make_user(runtime.database, "reader-only", Role.AUDITOR)
    make_user(runtime.database, "branch", Role.ORG_ADMIN, org_unit_id=seed.org_unit_id)
    with _browser(client) as auditor:
        csrf = sign_in(auditor, "reader-only")
        assert auditor.get("/admin/devices").status_code == 200
        refused = auditor.post(
            "/admin/devices",
            data={"kind": "kiosk", "reader_id": seed.reader_id, "csrf_token": csrf},
        )
        assert refused.status_code == 403
    with _browser(client) as branch:
        sign_in(branch, "branch")
        assert branch.get("/admin/devices").status_code == 403


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_cli_creates_lists_and_revokes(
    client: ApiClient,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = seed_minimal(client.runtime.database.write_sessions, datetime.now(UTC))
    monkeypatch.setenv("ROLLCALL_DATABASE_URL", database_url)
    assert (
        main(
            [
                "devices",
                "create",
                "--kind",
                "screen",
                "--room",
                "T101",
                "--base-url",
                "https://rc.example",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    token = re.search(r"^token: (\S+)$", out, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert f"url: https://rc.example/live?token={token}" in out
    assert main(["devices", "create", "--kind", "kiosk", "--reader", seed.reader_id]) == 0
    assert main(["devices", "create", "--kind", "kiosk", "--reader", "nobody"]) == 1
    capsys.readouterr()
    assert main(["devices", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[1:4] for line in listing] == [
        ["kiosk", seed.reader_id, "active"],
        ["screen", "T101", "active"],
    ]
    assert token not in "".join(listing)
    assert main(["devices", "revoke", listing[1].split("\t")[0]]) == 0
    with httpx.Client(base_url=str(client.base_url)) as screen:
        assert (
            screen.get("/live", params={"token": token}, follow_redirects=False).status_code == 401
        )
