"""Carry tap events between processes over MQTT, and from the ingest worker to the hub.

Why MQTT rather than PostgreSQL LISTEN/NOTIFY: every deployment already has a
broker (embedded or Mosquitto) and both server processes already speak to it,
while LISTEN/NOTIFY would leave SQLite deployments without the split and hold
a dedicated database connection per web process. The events are QoS 0 and
carry only ids: a screen that misses one loses a momentary update, nothing
more, and recomputes its figures from the database on the next.

Each process has one relay. Its ingest worker (if any) hands every committed
batch to `EventRelay.publish`, which gives it to this process's hub directly and
publishes it to the broker for the others, on the worker's own connection
(`send_through`); the relay's subscription then skips the batches carrying its
own origin, so no page sees an event twice.
"""

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from protocol import topics
from server.ingest.endpoint import MqttEndpoint
from server.kiosk.errors import KioskError
from server.kiosk.events import decode_batch, encode_batch, events_from
from server.kiosk.hub import EventHub
from server.services.taps import Outcome

log = logging.getLogger(__name__)

EVENTS_QOS = 0

# Publishes (topic, payload) at EVENTS_QOS; returns paho's result code.
Sender = Callable[[str, bytes], MQTTErrorCode]


class EventRelay:
    """An MQTT client that publishes this process's events and feeds the hub with others'."""

    def __init__(
        self, endpoint: MqttEndpoint, hub: EventHub, *, keepalive: int = 30, listen: bool = True
    ) -> None:
        self.endpoint = endpoint
        self.hub = hub
        # A process without screens (a standalone `rollcall ingest`) only publishes:
        # subscribing would have it receive and decode every batch it sent.
        self.listen = listen
        self.origin = uuid.uuid4().hex
        self._own_marker = f'"origin":"{self.origin}"'.encode()
        self._keepalive = keepalive
        self._subscribed = threading.Event()
        # Set once the broker has answered the subscription, yes or no.
        self._answered = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"rollcall-events-{self.origin[:12]}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        endpoint.configure(self._client)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._send: Sender | None = None

    def send_through(self, send: Sender) -> None:
        """Publish this process's batches with `send` (the ingest worker's connection).

        The worker calls `publish` on its network thread right after queueing a
        batch's acks: on its connection the events go out in the same write,
        where the relay's own client would wake its network thread for every
        batch (at 1,000 taps/s, 0.15 ms of each batch's answer, measured). The
        relay's client goes on receiving the other processes' batches.
        """
        self._send = send

    def start(self) -> None:
        """Connect in the background (retrying) and subscribe to other processes' events."""
        self._client.connect_async(self.endpoint.host, self.endpoint.port, self._keepalive)
        self._client.loop_start()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until subscribed (connected, if not listening); False on timeout or refusal."""
        self._answered.wait(timeout)
        return self._subscribed.is_set()

    def stop(self) -> None:
        """Disconnect; safe twice."""
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, outcomes: Sequence[Outcome]) -> None:
        """Tell this process's hub and every other process about a committed batch.

        Called by the ingest worker after each commit; never raises into it.
        """
        try:
            events = events_from(outcomes)
            if not events:
                return
            self.hub.publish(events)
            payload = encode_batch(self.origin, events)
            if self._send is not None:
                rc = self._send(topics.server_events(), payload)
            else:
                rc = self._client.publish(topics.server_events(), payload, qos=EVENTS_QOS).rc
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # QoS 0 while disconnected is dropped by paho: other processes' screens
                # miss this update and catch up with the next.
                log.warning("tap events not sent to other processes: %s", rc)
        except Exception:
            log.exception("tap events not published")

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker refused the event relay: %s", reason_code)
            return
        if not self.listen:
            self._subscribed.set()
            self._answered.set()
            return
        client.subscribe(topics.server_events(), qos=EVENTS_QOS)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Any,
    ) -> None:
        if any(code.is_failure for code in reason_codes):
            # Screens then see only what this process's own ingest records.
            log.error(
                "MQTT broker refused the subscription to %s (%s): allow the server account "
                "to read and write it in the broker's ACL",
                topics.server_events(),
                reason_codes,
            )
        else:
            self._subscribed.set()
        self._answered.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._subscribed.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._own_marker in message.payload[:128]:
            return  # our own batch, already given to our hub: skip it before decoding
        try:
            batch = decode_batch(bytes(message.payload))
        except KioskError as exc:
            log.warning("ignoring a message on %s: %s", message.topic, exc)
            return
        if batch.origin != self.origin:
            self.hub.publish(batch.events)
