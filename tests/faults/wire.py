"""A raw MQTT client for the fault tests: publishes any bytes as a reader would, collects acks."""

import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol import Ack, MalformedMessage, decode_as


class RawReader:
    """A paho client that publishes raw payloads and collects everything on its subscriptions."""

    def __init__(self, host: str, port: int, client_id: str = "") -> None:
        self._lock = threading.Lock()
        self.received: list[tuple[str, bytes]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda c, u, mid, codes, p: self._subscribed.set()
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    def subscribe(self, topic_filter: str) -> None:
        """Subscribe (QoS 1) and wait for the broker to confirm."""
        self._subscribed.clear()
        self.client.subscribe(topic_filter, 1)
        if not self._subscribed.wait(10):
            raise TimeoutError(f"no SUBACK for {topic_filter}")

    def publish(self, topic: str, payload: bytes, *, wait: bool = True) -> None:
        """Publish at QoS 1; with `wait`, until the broker has acknowledged it."""
        info = self.client.publish(topic, payload, qos=1)
        if wait:
            info.wait_for_publish(10)

    def on(self, topic: str) -> list[bytes]:
        """Payloads received so far on one topic."""
        with self._lock:
            return [p for t, p in self.received if t == topic]

    def acks(self, topic: str) -> list[Ack]:
        """The acks received so far on `topic`, decoded (malformed ones fail the test)."""
        decoded = []
        for payload in self.on(topic):
            try:
                decoded.append(decode_as(payload, Ack))
            except MalformedMessage as exc:
                raise AssertionError(f"the server sent a malformed ack: {payload!r}") from exc
        return decoded

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Poll until `predicate` holds, or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise TimeoutError(f"condition not met within {timeout} s ({len(self.received)} received)")

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()
