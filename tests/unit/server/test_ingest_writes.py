"""The ingest client's writes: queued packets joined into one send(), paho's duties kept."""

from typing import Any

import paho.mqtt.client as mqtt
import pytest

from server.ingest.worker import _IngestClient


class _Socket:
    """Takes at most `room` bytes per send(), as a full socket buffer would."""

    def __init__(self, room: int = 1 << 20) -> None:
        self.room = room
        self.sends: list[bytes] = []

    def send(self, data: bytes | bytearray) -> int:
        taken = bytes(data[: self.room])
        self.sends.append(taken)
        return len(taken)

    def close(self) -> None:
        """paho closes its socket when the client goes."""


def _client(socket: _Socket) -> _IngestClient:
    client = _IngestClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t")
    client._sock = socket  # type: ignore[assignment]
    return client


def _queue(client: _IngestClient, command: int, packet: bytes, qos: int = 1) -> Any:
    info = mqtt.MQTTMessageInfo(1)
    client._out_packet.append(
        {
            "command": command,
            "mid": 1,
            "qos": qos,
            "pos": 0,
            "to_process": len(packet),
            "packet": packet,
            "info": info,
        }
    )
    return info


def test_queued_packets_go_out_in_one_send() -> None:
    socket = _Socket()
    client = _client(socket)
    _queue(client, mqtt.PUBACK, b"\x40\x02\x00\x01")
    _queue(client, mqtt.PUBLISH, b"\x32ack-one")
    _queue(client, mqtt.PUBACK, b"\x40\x02\x00\x02")

    assert client._packet_write() == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    assert socket.sends == [b"\x40\x02\x00\x01\x32ack-one\x40\x02\x00\x02"]
    assert not client._out_packet


def test_a_qos0_publish_is_written_on_its_own_and_reported_published() -> None:
    socket = _Socket()
    client = _client(socket)
    published: list[int] = []
    client.on_publish = lambda _c, _u, mid, _rc, _p: published.append(mid)
    _queue(client, mqtt.PUBACK, b"\x40\x02\x00\x01")
    _queue(client, mqtt.PUBACK, b"\x40\x02\x00\x02")
    event = _queue(client, mqtt.PUBLISH, b"\x30event", qos=0)
    _queue(client, mqtt.PUBACK, b"\x40\x02\x00\x03")

    client._packet_write()

    assert socket.sends == [b"\x40\x02\x00\x01\x40\x02\x00\x02", b"\x30event", b"\x40\x02\x00\x03"]
    assert published == [1]
    assert event.is_published()


def test_what_the_socket_does_not_take_stays_queued_in_order() -> None:
    socket = _Socket(room=5)
    client = _client(socket)
    _queue(client, mqtt.PUBACK, b"\x40\x02\x00\x01")
    _queue(client, mqtt.PUBLISH, b"\x32ack-one")
    _queue(client, mqtt.PUBACK, b"\x40\x02\x00\x02")

    for _ in range(10):
        if not client._out_packet:
            break
        client._packet_write()

    assert b"".join(socket.sends) == b"\x40\x02\x00\x01\x32ack-one\x40\x02\x00\x02"
    assert all(len(s) <= 5 for s in socket.sends)


@pytest.mark.parametrize("partial", [0, 2])
def test_a_partly_written_head_packet_sends_only_its_rest(partial: int) -> None:
    socket = _Socket()
    client = _client(socket)
    _queue(client, mqtt.PUBACK, b"\x40\x02\x00\x01")
    client._out_packet[0]["pos"] = partial
    client._out_packet[0]["to_process"] -= partial
    _queue(client, mqtt.PUBACK, b"\x40\x02\x00\x02")

    client._packet_write()

    assert socket.sends == [b"\x40\x02\x00\x01"[partial:] + b"\x40\x02\x00\x02"]
