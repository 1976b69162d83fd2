"""Settings from defaults, environment and a TOML file."""

import os
from datetime import timedelta
from pathlib import Path

import pytest

from server.errors import ConfigError
from server.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ROLLCALL_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = load_settings()

    assert settings.database_url is None
    assert settings.resolved_database_url == "sqlite:///data/rollcall.sqlite3"
    assert settings.uses_embedded_broker
    assert (settings.embedded_broker_host, settings.embedded_broker_port) == ("127.0.0.1", 0)
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8000)
    assert settings.timezone == "Asia/Shanghai"
    assert settings.zone.key == "Asia/Shanghai"
    assert settings.ingest_batch_size == 500
    assert settings.ingest_client_id == "rollcall-ingest"
    assert not settings.ingest_shared
    assert settings.skew_tolerance == timedelta(minutes=2)


def test_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROLLCALL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ROLLCALL_MQTT_URL", "mqtt://ingest:secret@broker:1884")
    monkeypatch.setenv("ROLLCALL_INGEST_SHARED", "true")
    monkeypatch.setenv("ROLLCALL_HTTP_PORT", "9000")

    settings = load_settings()

    assert settings.resolved_database_url == f"sqlite:///{tmp_path.as_posix()}/rollcall.sqlite3"
    assert settings.mqtt_url == "mqtt://ingest:secret@broker:1884"
    assert settings.ingest_shared
    assert settings.http_port == 9000
    assert not settings.uses_embedded_broker


def test_toml_file_below_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "rollcall.toml"
    config.write_text('http_port = 8100\ntimezone = "Asia/Urumqi"\ningest_batch_size = 50\n')
    monkeypatch.setenv("ROLLCALL_HTTP_PORT", "8200")

    settings = load_settings(config)

    assert settings.http_port == 8200  # the environment wins
    assert settings.timezone == "Asia/Urumqi"
    assert settings.ingest_batch_size == 50


def test_config_file_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "rollcall.toml"
    config.write_text('database_url = "postgresql://rollcall@db/rollcall"\n')
    monkeypatch.setenv("ROLLCALL_CONFIG", str(config))

    assert load_settings().database_url == "postgresql://rollcall@db/rollcall"


def test_overrides_win(tmp_path: Path) -> None:
    config = tmp_path / "rollcall.toml"
    config.write_text("http_port = 8100\n")

    assert load_settings(config, http_port=8300).http_port == 8300


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('timezone = "Mars/Olympus"\n', "unknown time zone"),
        ('mqtt_url = "http://broker"\n', "scheme must be mqtt or mqtts"),
        ("ingest_shared = true\n", "needs an external broker"),
        ("ingest_batch_size = 0\n", "ingest_batch_size"),
        ("htpp_port = 1\n", "htpp_port"),
        ("http_port = [\n", "cannot read config file"),
    ],
)
def test_invalid_settings_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "rollcall.toml"
    config.write_text(content)

    with pytest.raises(ConfigError, match=message):
        load_settings(config)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")
