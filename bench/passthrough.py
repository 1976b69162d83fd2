"""The subscriber half of the raw passthrough probe: count QoS 1 messages, no processing.

Usage: python -m bench.passthrough HOST PORT TOPIC COUNT. Prints `ready` once
subscribed, then one JSON line: received, first and last (time.monotonic, which
is comparable across processes on Linux).
"""

import json
import socket
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main() -> int:
    """Subscribe, count COUNT messages (or stop after 120 s), report."""
    host, port, topic, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    state = {"received": 0, "first": 0.0, "last": 0.0}
    done = threading.Event()
    subscribed = threading.Event()

    def on_socket_open(client: mqtt.Client, userdata: Any, sock: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        if state["received"] == 0:
            state["first"] = now
        state["received"] += 1
        state["last"] = now
        if state["received"] >= count:
            done.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-passthrough-sub", protocol=mqtt.MQTTv311
    )
    client.on_socket_open = on_socket_open
    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.on_connect = lambda c, *_args: c.subscribe(topic, qos=1)
    client.connect(host, port, keepalive=60)
    client.loop_start()
    subscribed.wait(20)
    print("ready", flush=True)
    done.wait(120)
    client.disconnect()
    client.loop_stop()
    print(json.dumps(state), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
