"""Server settings from the environment (`ROLLCALL_…`) and an optional TOML file.

Precedence, highest first: explicit overrides, environment, the TOML file named by
`--config` or `ROLLCALL_CONFIG`, defaults. Nothing is read at import time: call
`load_settings()` from `main()` or a test.
"""

import os
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from server.errors import ConfigError

CONFIG_ENV_VAR = "ROLLCALL_CONFIG"

# The TOML file for the Settings being built right now; a context variable rather
# than class state so two threads can load different files at once.
_config_file: ContextVar[Path | None] = ContextVar("rollcall_config_file", default=None)


class Settings(BaseSettings):
    """Everything the server needs to know about its surroundings."""

    model_config = SettingsConfigDict(env_prefix="ROLLCALL_", extra="forbid", frozen=True)

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset: an SQLite file in data_dir"
    )
    mqtt_url: str | None = Field(
        default=None,
        description="mqtt://user:password@host:port or mqtts://…; unset: run the embedded broker",
    )
    embedded_broker_host: str = "127.0.0.1"
    embedded_broker_port: int = Field(default=0, ge=0, le=65535, description="0: any free port")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Path("data")
    timezone: str = "Asia/Shanghai"
    ingest_batch_size: int = Field(default=500, ge=1, le=10_000)
    ingest_client_id: str = Field(default="rollcall-ingest", min_length=1, max_length=64)
    ingest_shared: bool = Field(
        default=False, description="subscribe as $share/rollcall-ingest/… so workers split load"
    )
    skew_tolerance_seconds: float = Field(default=120.0, ge=0)
    scheduler_enabled: bool = Field(
        default=True, description="`rollcall serve` freezes rosters and closes sessions itself"
    )
    scheduler_interval_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="how often the scheduler looks for due sessions"
    )
    absence_grace_minutes: int = Field(
        default=120,
        ge=0,
        le=7 * 24 * 60,
        description="how long closing waits for readers that have not reported an empty outbox",
    )
    # Kiosk and live screen (issue 6).
    kiosk_name_mask: Literal["full", "mask_middle", "surname_only"] = Field(
        default="mask_middle", description="how kiosk and live screens show names (张*明)"
    )
    kiosk_clear_seconds: float = Field(
        default=10.0, gt=0, le=600, description="how long a kiosk shows a tap before clearing"
    )
    kiosk_register_hint: str = Field(
        default="请携带工作证到党建工作部登记",
        max_length=200,
        description="what a kiosk tells the holder of an unknown card",
    )
    # Provisioning (`rollcall readers`, `rollcall ca`): where the broker's credentials live.
    broker_password_file: Path | None = Field(
        default=None, description="Mosquitto password file readers are added to"
    )
    broker_pid_file: Path | None = Field(
        default=None, description="Mosquitto's pid file, to SIGHUP it after a change"
    )
    ca_dir: Path | None = Field(default=None, description="the site CA for TLS client certificates")
    broker_public_host: str | None = Field(
        default=None, description="the broker's host name as readers reach it"
    )
    # The strong card tier (issue 7): never in the repository, from the environment or a file.
    card_master_key: SecretStr | None = Field(
        default=None, description="card master key(s): HEX or VERSION:HEX, comma separated"
    )
    card_master_key_file: Path | None = Field(
        default=None, description="file holding the card master key(s), one per line"
    )
    card_master_key_version: int | None = Field(
        default=None, ge=1, description="version personalised with; unset: the highest"
    )
    # The admin console (issue 5): sign-in cookies, session lifetimes, login throttling.
    cookie_secure: bool = Field(
        default=True, description="send console cookies over HTTPS only (off for plain-HTTP labs)"
    )
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    session_absolute_hours: int = Field(default=12, ge=1, le=24 * 30)
    login_max_failures: int = Field(default=10, ge=1, le=1000)
    login_window_seconds: int = Field(default=60, ge=1, le=24 * 3600)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read overrides, then the environment, then the TOML file if one was named."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @model_validator(mode="after")
    def _check(self) -> Self:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from exc
        if self.mqtt_url is not None:
            scheme = urlsplit(self.mqtt_url).scheme
            if scheme not in ("mqtt", "mqtts"):
                raise ValueError(f"mqtt_url: scheme must be mqtt or mqtts, not {scheme!r}")
        elif self.ingest_shared:
            # amqtt has no shared subscriptions, and an in-process broker has one worker.
            raise ValueError("ingest_shared needs an external broker: set mqtt_url")
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The time zone people read times in."""
        return ZoneInfo(self.timezone)

    @property
    def skew_tolerance(self) -> timedelta:
        """How far ahead of our clock a reader may stamp a tap before it is refused."""
        return timedelta(seconds=self.skew_tolerance_seconds)

    @property
    def absence_grace(self) -> timedelta:
        """How long after a session's window closes absences are decided without every reader."""
        return timedelta(minutes=self.absence_grace_minutes)

    @property
    def resolved_database_url(self) -> str:
        """The database URL to use: the configured one or an SQLite file in data_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'rollcall.sqlite3').as_posix()}"

    @property
    def session_idle(self) -> timedelta:
        """How long a console session lasts without a request."""
        return timedelta(minutes=self.session_idle_minutes)

    @property
    def session_absolute(self) -> timedelta:
        """How long a console session lasts at most, however busy."""
        return timedelta(hours=self.session_absolute_hours)

    @property
    def login_window(self) -> timedelta:
        """The window in which login_max_failures wrong passwords throttle sign-in."""
        return timedelta(seconds=self.login_window_seconds)

    @property
    def uses_embedded_broker(self) -> bool:
        """Whether this server runs its own MQTT broker."""
        return self.mqtt_url is None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from overrides, environment and TOML file; raise ConfigError if invalid."""
    if config_file is None and os.environ.get(CONFIG_ENV_VAR):
        config_file = Path(os.environ[CONFIG_ENV_VAR])
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist or is not a file")
    token = _config_file.set(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        where = f" (config file {config_file})" if config_file else ""
        raise ConfigError(f"invalid settings{where}: {problems}") from exc
    except (OSError, ValueError) as exc:
        # tomllib.TOMLDecodeError is a ValueError; an unreadable file is an OSError.
        raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
    finally:
        _config_file.reset(token)
