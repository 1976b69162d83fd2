"""MqttEndpoint.configure: every server MQTT client logs in alike and turns Nagle off."""

import socket

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from server.ingest.endpoint import MqttEndpoint


def test_configured_client_sets_tcp_nodelay_on_its_socket() -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t")
    MqttEndpoint.parse("mqtt://user:secret@127.0.0.1:1883").configure(client)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert not sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert client.on_socket_open is not None
        client.on_socket_open(client, None, sock)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert client.username == "user"
    assert client.password == "secret"
