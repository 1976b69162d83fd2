"""`rollcall serve` and `rollcall ingest` refuse well-known secrets before starting anything."""

import os
from pathlib import Path

import pytest

from server.cli import EXIT_USAGE, main


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("ROLLCALL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ROLLCALL_DATA_DIR", str(tmp_path))


@pytest.mark.parametrize("command", ["serve", "ingest"])
def test_the_example_master_key_is_refused(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROLLCALL_CARD_MASTER_KEY", "00112233445566778899AABBCCDDEEFF")
    monkeypatch.setenv("ROLLCALL_MQTT_URL", "mqtt://rollcall-server:k3Jq9x2vLp@127.0.0.1:1")

    assert main([command]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "ROLLCALL_CARD_MASTER_KEY" in err
    assert "published" in err


def test_the_example_broker_password_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROLLCALL_MQTT_URL", "mqtt://rollcall-server:CHANGE-ME@127.0.0.1:1")

    assert main(["ingest"]) == EXIT_USAGE
    assert "ROLLCALL_MQTT_URL carries a well-known default password" in capsys.readouterr().err
