"""The MQTT connection the publisher talks through: an interface and its paho-mqtt 2.x adapter.

The publisher decides what to send and when; a Transport only moves messages,
keeps the connection up and reports what happens. Tests use an in-memory
Transport; production uses MqttTransport.
"""

import abc
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, ParamSpec, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from protocol import topics
from reader_agent.config import MqttTarget
from reader_agent.errors import ConfigError

log = logging.getLogger(__name__)
P = ParamSpec("P")

KEEPALIVE_SECONDS: Final = 30
RECONNECT_MIN_SECONDS: Final = 1
RECONNECT_MAX_SECONDS: Final = 30


class _DropBenignPahoErrors(logging.Filter):
    """paho 2.2 logs an ERROR each time its loop runs without a socket, which is
    what happens between reconnect attempts and after a clean disconnect."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Client is not connected. Socket: None")


_PAHO_LOG = logging.getLogger("paho")
_PAHO_FILTER = _DropBenignPahoErrors()


@dataclass(frozen=True)
class Outgoing:
    """A message to publish at QoS 1."""

    topic: str
    payload: bytes
    retain: bool = False


class TransportHandlers(Protocol):
    """What a Transport reports; called from the transport's own thread, so keep it quick."""

    def on_connected(self) -> None:
        """The broker accepted a (re)connection."""

    def on_disconnected(self, reason: str) -> None:
        """The connection was lost; the transport is reconnecting."""

    def on_message(self, topic: str, payload: bytes) -> None:
        """A message arrived on a subscribed topic."""


class Transport(abc.ABC):
    """A QoS 1 MQTT session that reconnects by itself."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """Whether the broker connection is up right now."""

    @abc.abstractmethod
    def start(self, handlers: TransportHandlers, will: Outgoing) -> None:
        """Begin connecting in the background, with `will` as the last will; returns at once."""

    @abc.abstractmethod
    def publish(self, message: Outgoing) -> None:
        """Publish at QoS 1; a message published while disconnected may be dropped or queued."""

    @abc.abstractmethod
    def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1 on the current connection."""

    @abc.abstractmethod
    def stop(self, final: Outgoing | None = None, timeout: float = 2.0) -> None:
        """Publish `final` if connected (waiting up to `timeout`), then disconnect."""


class MqttTransport(Transport):
    """Transport over paho-mqtt 2.x: MQTT 3.1.1, persistent session, TCP_NODELAY, TLS for mqtts."""

    def __init__(
        self,
        target: MqttTarget,
        client_id: str,
        *,
        tls_ca_file: Path | None = None,
        tls_cert_file: Path | None = None,
        tls_key_file: Path | None = None,
        max_inflight: int = 20,
    ) -> None:
        self._target = target
        self._client_id = client_id
        self._tls_files = (tls_ca_file, tls_cert_file, tls_key_file)
        self._max_inflight = max_inflight
        self._client: mqtt.Client | None = None
        self._handlers: TransportHandlers | None = None
        self._stopping = False

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up right now."""
        return self._client is not None and self._client.is_connected()

    @property
    def tcp_nodelay(self) -> bool | None:
        """Whether Nagle's algorithm is off on the live socket; None when there is none."""
        sock = self._client.socket() if self._client is not None else None
        if not isinstance(sock, socket.socket):
            return None
        return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    def start(self, handlers: TransportHandlers, will: Outgoing) -> None:
        """Configure the client and start paho's network thread, which connects and reconnects."""
        if self._client is not None:
            raise RuntimeError("transport already started")
        self._handlers = handlers
        # clean_session=False: the broker keeps our acks subscription, and queues
        # acks sent while we are away, across reconnects.
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        if _PAHO_FILTER not in _PAHO_LOG.filters:
            _PAHO_LOG.addFilter(_PAHO_FILTER)
        client.enable_logger(_PAHO_LOG)
        client.will_set(will.topic, will.payload, qos=topics.QOS, retain=will.retain)
        if self._target.username is not None:
            client.username_pw_set(self._target.username, self._target.password)
        if self._target.tls:
            self._set_up_tls(client)
        client.reconnect_delay_set(RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS)
        client.max_inflight_messages_set(self._max_inflight)
        client.on_socket_open = self._on_socket_open
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        log.info("connecting to %s as %s", self._target.redacted(), self._client_id)
        # connect_async + loop_start: the first attempt happens in paho's thread, which
        # keeps retrying with backoff, so a broker that is down at start is no error.
        client.connect_async(self._target.host, self._target.port, KEEPALIVE_SECONDS)
        client.loop_start()
        self._client = client

    def _set_up_tls(self, client: mqtt.Client) -> None:
        ca_file, cert_file, key_file = self._tls_files
        try:
            client.tls_set(
                ca_certs=str(ca_file) if ca_file else None,
                certfile=str(cert_file) if cert_file else None,
                keyfile=str(key_file) if key_file else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot use the TLS files tls_ca_file/tls_cert_file: {exc}") from exc

    def publish(self, message: Outgoing) -> None:
        """Publish at QoS 1; paho queues it in memory if the connection is down."""
        client = self._require_client()
        info = client.publish(message.topic, message.payload, qos=topics.QOS, retain=message.retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("publish on %s failed: %s", message.topic, mqtt.error_string(info.rc))

    def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1."""
        result, _ = self._require_client().subscribe(topic, qos=topics.QOS)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("subscribe to %s failed: %s", topic, mqtt.error_string(result))

    def stop(self, final: Outgoing | None = None, timeout: float = 2.0) -> None:
        """Publish `final` if connected and wait for the broker's PUBACK, then disconnect."""
        client = self._client
        if client is None:
            return
        self._stopping = True
        if final is not None and client.is_connected():
            info = client.publish(final.topic, final.payload, qos=topics.QOS, retain=final.retain)
            try:
                info.wait_for_publish(timeout)
            except (ValueError, RuntimeError) as exc:
                log.warning("could not publish %s before disconnecting: %s", final.topic, exc)
            else:
                if not info.is_published():
                    log.warning("broker did not confirm %s within %.1f s", final.topic, timeout)
        client.disconnect()
        client.loop_stop()
        self._client = None

    def _require_client(self) -> mqtt.Client:
        if self._client is None:
            raise RuntimeError("transport not started")
        return self._client

    # paho callbacks, on paho's network thread. paho re-raises a callback's
    # exception and that ends its thread, so every callback catches and logs.

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # paho never disables Nagle; with it on, each small publish waits 20-40 ms.
        try:
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            log.warning("cannot set TCP_NODELAY: %s", exc)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused the connection: %s", self._target.redacted(), reason_code)
            return
        present = flags.session_present
        log.info("connected to %s (session present: %s)", self._target.redacted(), present)
        if self._handlers is not None:
            _guarded(self._handlers.on_connected)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # Called for each failed attempt; the backoff keeps this to one line per 30 s at most.
        log.warning("cannot reach broker %s; retrying", self._target.redacted())

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if self._stopping:
            return
        log.warning("lost the broker connection (%s); reconnecting", reason_code)
        if self._handlers is not None:
            _guarded(self._handlers.on_disconnected, str(reason_code))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._handlers is not None:
            _guarded(self._handlers.on_message, message.topic, bytes(message.payload))


def _guarded(handler: Callable[P, None], *args: P.args, **kwargs: P.kwargs) -> None:
    try:
        handler(*args, **kwargs)
    except Exception:
        log.exception("transport handler %s failed", getattr(handler, "__name__", handler))
