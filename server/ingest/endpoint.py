"""Where an MQTT broker is and how to log in: parsed from mqtt:// and mqtts:// URLs."""

import logging
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from server.errors import ConfigError

log = logging.getLogger(__name__)

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

    def configure(self, client: mqtt.Client) -> None:
        """Give a paho client this endpoint's login, TLS, reconnect pacing and TCP_NODELAY."""
        client.reconnect_delay_set(1, 30)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set()
        client.on_socket_open = _no_delay

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


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    # paho never sets TCP_NODELAY: Nagle's algorithm would hold each small ack or
    # event back 20-40 ms per hop.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError) as exc:
        log.debug("cannot set TCP_NODELAY: %s", exc)
