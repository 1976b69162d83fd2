"""paho-mqtt 2.x clients for the deployment tests: connect as someone, record what arrives."""

import queue
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

# CONNACK refusals as paho 2.x reports them for MQTT 3.1.1 (return codes 4 and 5).
BAD_CREDENTIALS = "Bad user name or password"
NOT_AUTHORISED = "Not authorized"
REFUSALS = (BAD_CREDENTIALS, NOT_AUTHORISED)


@dataclass(frozen=True)
class ClientCertificate:
    """The files a TLS client presents and trusts."""

    ca_file: Path
    cert_file: Path | None
    key_file: Path | None


class Client:
    """One MQTT 3.1.1 connection; `connect()` returns the CONNACK's reason or raises."""

    def __init__(
        self,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: ClientCertificate | None = None,
    ) -> None:
        self.port = port
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._answered = threading.Event()
        self._subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.reason: ReasonCode | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set(
                ca_certs=str(tls.ca_file),
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, message: self.messages.put(message)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self._subacks.put(list(codes))
        self._started = False

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason: ReasonCode, p: Any
    ) -> None:
        self.reason = reason
        self._answered.set()
        if reason.is_failure:
            client.disconnect()  # or paho would retry, refused again and again

    def connect(self, timeout: float = 5.0) -> str:
        """Connect and return the CONNACK reason ("Success" or the refusal)."""
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        self._started = True
        if not self._answered.wait(timeout):
            raise TimeoutError(f"no CONNACK from port {self.port}")
        assert self.reason is not None
        return str(self.reason)

    def subscribe(self, topic_filter: str) -> list[ReasonCode]:
        """Subscribe at QoS 1 and return the SUBACK's reason codes."""
        self.client.subscribe(topic_filter, qos=1)
        return self._subacks.get(timeout=5)

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def next(self, timeout: float = 5.0) -> mqtt.MQTTMessage:
        """The next message received, or TimeoutError."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no message arrived") from None

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        if self._started:
            self.client.disconnect()
            self.client.loop_stop()
