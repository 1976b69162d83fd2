"""Reader agent settings: a TOML file, then `ROLLCALL_READER_*` variables, then CLI overrides."""

import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from protocol import TapMode
from protocol.messages import ReaderId
from reader_agent.errors import ConfigError
from reader_agent.feedback_gpio import SYSFS_GPIO
from reader_agent.sources.options import NfcpyOptions, PcscOptions

ENV_PREFIX: Final = "ROLLCALL_READER_"
DEFAULT_MQTT_URL: Final = "mqtt://127.0.0.1:1883"
DIAGNOSTIC_ID: Final = "diagnostics"  # stands in for the id where none is needed
_DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}
_MIN_SIGN_KEY_BYTES: Final = 16
_TRUE_WORDS: Final = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS: Final = frozenset({"false", "no", "off", "0"})

# Values read from the TOML file for the settings being built. A context variable
# rather than a class attribute so two threads loading different files cannot mix.
_file_values: ContextVar[dict[str, Any] | None] = ContextVar("_file_values", default=None)


@dataclass(frozen=True)
class MqttTarget:
    """Where and how to reach the broker, parsed from `mqtt_url`."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    def redacted(self) -> str:
        """The URL without its password, fit for logs."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}:***@" if self.username is not None else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}"


def parse_mqtt_url(url: str) -> MqttTarget:
    """Parse `mqtt://[user[:password]@]host[:port]` or `mqtts://…`; raise ValueError if bad."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"unsupported scheme {parts.scheme!r}: use mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError("no broker host in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a broker URL has no path, query or fragment")
    try:
        port = parts.port
    except ValueError as exc:  # urllib says "Port out of range 0-65535" or similar
        raise ValueError(f"bad port: {exc}") from None
    return MqttTarget(
        host=parts.hostname,
        port=port or _DEFAULT_PORTS[scheme],
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=scheme == "mqtts",
    )


class GpioOptions(BaseModel):
    """The GPIO lines `feedback = "gpio"` drives: a buzzer and, optionally, an LED."""

    # Forbid unknown keys: a misspelt pin would otherwise leave the buzzer silent.
    model_config = ConfigDict(extra="forbid", frozen=True)

    buzzer_pin: int | None = Field(
        default=None,
        ge=0,
        description="kernel GPIO number of the buzzer; required with feedback = 'gpio'",
    )
    led_pin: int | None = Field(default=None, ge=0, description="kernel GPIO number of the LED")
    active_low: bool = Field(default=False, description="both lines are on when driven low")
    sysfs_root: Path = Field(default=SYSFS_GPIO, description="the kernel's sysfs GPIO directory")

    @model_validator(mode="after")
    def _check_distinct_pins(self) -> "GpioOptions":
        if self.led_pin is not None and self.led_pin == self.buzzer_pin:
            raise ValueError("led_pin and buzzer_pin are the same GPIO line")
        return self


class ReaderSettings(BaseSettings):
    """Everything a reader agent needs to run; built once in `main()` and passed down."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    id: ReaderId = Field(description="this reader's id")
    # repr=False: the URL may carry the broker password.
    mqtt_url: str = Field(default=DEFAULT_MQTT_URL, repr=False)
    tls_ca_file: Path | None = Field(default=None, description="CA bundle for mqtts")
    tls_cert_file: Path | None = Field(default=None, description="client certificate")
    tls_key_file: Path | None = Field(default=None, description="client certificate's key")
    source: Literal["simulated", "pcsc", "nfcpy"] = "simulated"
    data_dir: Path | None = Field(default=None, description="where the outbox lives by default")
    outbox_path: Path | None = None
    mode: TapMode = TapMode.CHECKIN
    debounce_seconds: float = Field(default=3.0, ge=0)
    resend_after_seconds: float = Field(default=20.0, gt=0)
    status_interval_seconds: float = Field(default=30.0, gt=0)
    clock_synced: Literal["auto"] | bool = "auto"
    clock_offset_seconds: float = Field(
        default=0.0,
        allow_inf_nan=False,
        description="moves this agent's clock (and its taps' times) by this much; "
        "only to stage or diagnose clock skew, 0 in production",
    )
    max_inflight: int = Field(default=100, ge=1, le=65535)
    pcsc: PcscOptions = Field(default_factory=PcscOptions)
    nfcpy: NfcpyOptions = Field(default_factory=NfcpyOptions)
    sign_key: SecretStr | None = Field(default=None, description="hex HMAC key for `sig`")
    feedback: Literal["console", "gpio"] = "console"
    gpio: GpioOptions = Field(default_factory=GpioOptions)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order of precedence: explicit overrides, then environment, then the TOML file."""
        file_values = _file_values.get()
        if not file_values:
            return (init_settings, env_settings)
        return (init_settings, env_settings, InitSettingsSource(settings_cls, file_values))

    @field_validator("clock_synced", mode="before")
    @classmethod
    def _check_clock_synced(cls, value: object) -> object:
        # One clear message instead of one per member of the union.
        if isinstance(value, str):
            word = value.strip().lower()
            if word == "auto":
                return "auto"
            if word in _TRUE_WORDS | _FALSE_WORDS:
                return word in _TRUE_WORDS
        if isinstance(value, bool):
            return value
        raise ValueError("must be 'auto', true or false")

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        parse_mqtt_url(value)
        return value

    @field_validator("sign_key")
    @classmethod
    def _check_sign_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            key = bytes.fromhex(value.get_secret_value())
        except ValueError:
            raise ValueError("must be hex digits") from None
        if len(key) < _MIN_SIGN_KEY_BYTES:
            raise ValueError(f"must be at least {_MIN_SIGN_KEY_BYTES} bytes (32 hex digits)")
        return value

    @model_validator(mode="after")
    def _check_tls_files(self) -> "ReaderSettings":
        tls_files = (self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        if any(f is not None for f in tls_files) and not self.mqtt.tls:
            raise ValueError("tls_* files are set but mqtt_url is not mqtts://")
        return self

    @model_validator(mode="after")
    def _check_gpio_feedback(self) -> "ReaderSettings":
        if self.feedback == "gpio" and self.gpio.buzzer_pin is None:
            raise ValueError(
                "feedback = 'gpio' needs the buzzer's GPIO number: "
                f"set buzzer_pin in [gpio] or {ENV_PREFIX}GPIO__BUZZER_PIN"
            )
        return self

    @property
    def mqtt(self) -> MqttTarget:
        """The broker address, credentials and TLS flag parsed from `mqtt_url`."""
        return parse_mqtt_url(self.mqtt_url)

    @property
    def outbox_file(self) -> Path:
        """The outbox database: `outbox_path`, else `rollcall-outbox-{id}.sqlite3` in data_dir."""
        if self.outbox_path is not None:
            return self.outbox_path
        base = self.data_dir if self.data_dir is not None else Path()
        return base / f"rollcall-outbox-{self.id}.sqlite3"

    def sign_key_bytes(self) -> bytes | None:
        """The signing key as bytes, or None when taps go unsigned."""
        if self.sign_key is None:
            return None
        return bytes.fromhex(self.sign_key.get_secret_value())


def load_settings(config_path: Path | None, **overrides: Any) -> ReaderSettings:
    """Build settings from a TOML file, the environment and overrides (None values skipped).

    Raises ConfigError naming the setting at fault.
    """
    return _load(config_path, {}, overrides)


def load_diagnostic_settings(config_path: Path | None) -> ReaderSettings:
    """Build settings for a diagnostic that needs no reader id, such as `list-readers`.

    The id from the file or the environment is used when there is one; otherwise
    a stand-in, so a terminal not yet provisioned can still be checked.
    Raises ConfigError naming the setting at fault.
    """
    return _load(config_path, {"id": DIAGNOSTIC_ID}, {})


def _load(
    config_path: Path | None, defaults: Mapping[str, Any], overrides: Mapping[str, Any]
) -> ReaderSettings:
    # Defaults stand below the file, which stands below the environment and overrides.
    file_values = _read_toml(config_path) if config_path is not None else {}
    file_values = {**defaults, **file_values}
    given = {key: value for key, value in overrides.items() if value is not None}
    with _reading(file_values):
        try:
            return ReaderSettings(**given)
        except ValidationError as exc:
            raise ConfigError(_explain(exc, config_path)) from None


def environment_has_settings(environ: Mapping[str, str] | None = None) -> bool:
    """Whether any `ROLLCALL_READER_*` variable is set (in `environ`, else the process's)."""
    names = os.environ if environ is None else environ
    return any(name.upper().startswith(ENV_PREFIX) for name in names)


@contextmanager
def _reading(file_values: dict[str, Any]) -> Iterator[None]:
    token = _file_values.set(file_values)
    try:
        yield
    finally:
        _file_values.reset(token)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _explain(exc: ValidationError, config_path: Path | None) -> str:
    in_file = f"{config_path}, " if config_path is not None else "the config file, "
    problems = []
    # include_input=False: inputs may be secrets (sign_key, a password in mqtt_url).
    for error in exc.errors(include_url=False, include_input=False):
        name = ".".join(str(part) for part in error["loc"])
        origin = in_file + ENV_PREFIX + "__".join(str(part) for part in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ")
        if not name:  # a check across several settings
            problems.append(f"invalid settings: {message}")
        elif error["type"] == "missing":
            problems.append(f"setting '{name}' is required: set it in {origin} or by option")
        elif error["type"] == "extra_forbidden":
            problems.append(f"unknown setting '{name}'")
        else:
            problems.append(f"invalid setting '{name}' (from {origin} or option): {message}")
    return "; ".join(problems)
