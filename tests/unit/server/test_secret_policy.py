"""Serve and ingest refuse well-known secrets; master keys come from the environment or a file."""

import os
from pathlib import Path

import pytest

from server.errors import ConfigError
from server.secret_policy import refuse_default_secrets, with_demo_secrets
from server.services.cardauth import card_keyring, parse_master_keys
from server.settings import load_settings

GOOD = "8E1F2A93C4D5B6E7F8091A2B3C4D5E6F"
OLD = "0F1E2D3C4B5A69788796A5B4C3D2E1F0"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ROLLCALL_"):
            monkeypatch.delenv(name)


def test_no_secrets_configured_is_fine() -> None:
    settings = load_settings()
    refuse_default_secrets(settings)
    assert card_keyring(settings) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ROLLCALL_DATABASE_URL", "postgresql://rollcall:CHANGE-ME@db:5432/rollcall"),
        ("ROLLCALL_DATABASE_URL", "postgresql://postgres:postgres@db/rollcall"),
        ("ROLLCALL_MQTT_URL", "mqtt://rollcall-server:CHANGE-ME@mosquitto:1883"),
    ],
)
def test_example_passwords_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name} carries a well-known default password"):
        refuse_default_secrets(load_settings())


def test_real_passwords_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLCALL_DATABASE_URL", "postgresql://rollcall:k3Jq9x2vLp@db/rollcall")
    refuse_default_secrets(load_settings())


def test_the_an10922_example_master_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLCALL_CARD_MASTER_KEY", "00112233445566778899AABBCCDDEEFF")
    with pytest.raises(ConfigError) as caught:
        refuse_default_secrets(load_settings())
    message = str(caught.value)
    assert "ROLLCALL_CARD_MASTER_KEY" in message
    assert "ROLLCALL_CARD_MASTER_KEY_FILE" in message
    assert "published" in message
    assert "00112233" not in message


def test_master_keys_from_a_file_with_versions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "card-master.keys"
    key_file.write_text(f"# rotated 2026-11\n1:{OLD}\n2:{GOOD}\n")
    monkeypatch.setenv("ROLLCALL_CARD_MASTER_KEY_FILE", str(key_file))
    ring = card_keyring(load_settings())
    assert ring is not None
    assert ring.current == 2
    assert sorted(ring.masters) == [1, 2]

    monkeypatch.setenv("ROLLCALL_CARD_MASTER_KEY_VERSION", "1")
    ring = card_keyring(load_settings())
    assert ring is not None
    assert ring.current == 1


def test_value_and_file_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "k").write_text(GOOD)
    monkeypatch.setenv("ROLLCALL_CARD_MASTER_KEY", GOOD)
    monkeypatch.setenv("ROLLCALL_CARD_MASTER_KEY_FILE", str(tmp_path / "k"))
    with pytest.raises(ConfigError, match="not both"):
        card_keyring(load_settings())


@pytest.mark.parametrize(
    ("text", "problem"),
    [("", "no key"), ("abcd", "entry 1"), (f"1:{GOOD} 1:{OLD}", "twice"), (f"0:{GOOD}", "start")],
)
def test_bad_key_text_is_refused_without_quoting_it(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        parse_master_keys(text, origin="ROLLCALL_CARD_MASTER_KEY")
    assert GOOD not in str(caught.value)


def test_the_demo_makes_its_own_master_key() -> None:
    settings = with_demo_secrets(load_settings())
    ring = card_keyring(settings)
    assert ring is not None
    assert with_demo_secrets(load_settings()).card_master_key != settings.card_master_key
