"""Refusing to run with a missing or well-known secret outside `rollcall demo`.

Secrets come from the environment or from files the operator keeps outside the
repository; a value copied from an example file or a manual (`CHANGE-ME`, the
AN10922 example key) protects nothing, so `serve` and `ingest` will not start
with one. The demo generates its own secrets and never comes here.
"""

import secrets
from typing import Final
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from server.errors import ConfigError
from server.services.cardauth import MASTER_KEY_ENV, MASTER_KEY_FILE_ENV, card_keyring
from server.settings import Settings

# Passwords from our own example files and the usual first guesses.
KNOWN_PASSWORDS: Final = frozenset(
    {
        "change-me",
        "changeme",
        "password",
        "passw0rd",
        "secret",
        "postgres",
        "rollcall",
        "mosquitto",
        "admin",
        "root",
        "123456",
        "12345678",
    }
)


def _url_password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password is not None else None


def refuse_default_secrets(settings: Settings) -> None:
    """Raise ConfigError naming the first setting that holds a well-known or unusable secret."""
    for name, url in (
        ("ROLLCALL_DATABASE_URL", settings.database_url),
        ("ROLLCALL_MQTT_URL", settings.mqtt_url),
    ):
        password = _url_password(url)
        if password is not None and password.lower() in KNOWN_PASSWORDS:
            raise ConfigError(
                f"{name} carries a well-known default password; give the account a real one "
                f"and set {name} in the environment (or the service's environment file)"
            )
    # Parsing checks the master keys: size, and none of the published example keys.
    try:
        card_keyring(settings)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc}; generate one with `openssl rand -hex 16` and give it in "
            f"{MASTER_KEY_ENV} or, better, a file named by {MASTER_KEY_FILE_ENV}"
        ) from exc


def with_demo_secrets(settings: Settings) -> Settings:
    """The demo's settings: a fresh random card master key unless one is configured."""
    if settings.card_master_key is not None or settings.card_master_key_file is not None:
        return settings
    return settings.model_copy(update={"card_master_key": SecretStr(secrets.token_hex(16))})
