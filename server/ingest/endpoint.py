"""Where an MQTT broker is and how to log in: parsed from mqtt:// and mqtts:// URLs."""

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from server.errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class MqttEndpoint:
    """A broker address, TLS on or off, and optional credentials."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> "MqttEndpoint":
        """Parse mqtt://user:password@host:port or mqtts://…; raise ConfigError if invalid."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise ConfigError(f"mqtt_url: scheme must be mqtt or mqtts, not {parts.scheme!r}")
        if not parts.hostname:
            raise ConfigError(f"mqtt_url: no host in {cls._redact(url)!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"mqtt_url: unexpected path or query in {cls._redact(url)!r}")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise ConfigError(f"mqtt_url: bad port in {cls._redact(url)!r}") from exc
        return cls(
            host=parts.hostname,
            port=port,
            tls=parts.scheme == "mqtts",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    @property
    def url(self) -> str:
        """The broker's URL without credentials, safe to print."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"

    @staticmethod
    def _redact(url: str) -> str:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()
