"""The embedded amqtt broker: free port, QoS 1, retained messages, persistent sessions."""

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from server.broker import EmbeddedBroker
from server.errors import BrokerError

Probes = Callable[..., Any]


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker("127.0.0.1", 0) as running:
        yield running


def test_port_zero_picks_a_free_port(broker: EmbeddedBroker) -> None:
    assert broker.running
    assert broker.port > 0
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    with socket.create_connection(("127.0.0.1", broker.port), timeout=2):
        pass


def test_two_brokers_side_by_side(broker: EmbeddedBroker) -> None:
    with EmbeddedBroker() as other:
        assert other.port != broker.port


def test_busy_port_is_a_clear_error(broker: EmbeddedBroker) -> None:
    with pytest.raises(BrokerError, match=f"127.0.0.1:{broker.port}"):
        EmbeddedBroker("127.0.0.1", broker.port).start()


def test_stopped_broker_has_no_port() -> None:
    broker = EmbeddedBroker()
    broker.start()
    port = broker.port
    broker.stop()

    assert not broker.running
    with pytest.raises(BrokerError, match="not running"):
        _ = broker.port
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        pass


def test_qos1_publish_and_subscribe(broker: EmbeddedBroker, probes: Probes) -> None:
    subscriber = probes(broker.host, broker.port, "sub")
    subscriber.subscribe("rollcall/v1/readers/+/taps")
    publisher = probes(broker.host, broker.port, "pub")

    publisher.publish("rollcall/v1/readers/room-1/taps", b'{"n": 1}')
    message = subscriber.next()

    assert (message.topic, message.payload, message.qos) == (
        "rollcall/v1/readers/room-1/taps",
        b'{"n": 1}',
        1,
    )


def test_retained_message_reaches_a_late_subscriber(broker: EmbeddedBroker, probes: Probes) -> None:
    publisher = probes(broker.host, broker.port, "pub")
    publisher.publish("rollcall/v1/readers/room-1/status", b"online", retain=True)

    late = probes(broker.host, broker.port, "late")
    late.subscribe("rollcall/v1/readers/+/status")
    message = late.next()

    assert (message.payload, message.retain) == (b"online", True)


def test_persistent_session_keeps_qos1_messages_while_away(
    broker: EmbeddedBroker, probes: Probes
) -> None:
    worker = probes(broker.host, broker.port, "worker", clean=False)
    worker.subscribe("rollcall/v1/readers/+/taps")
    worker.close()
    publisher = probes(broker.host, broker.port, "pub")

    publisher.publish("rollcall/v1/readers/room-1/taps", b"while-away")
    back = probes(broker.host, broker.port, "worker", clean=False)
    message = back.next()

    assert message.payload == b"while-away"


def test_stop_with_clients_still_connected(probes: Probes) -> None:
    broker = EmbeddedBroker()
    broker.start()
    client = probes(broker.host, broker.port, "lingering")
    client.subscribe("x/#")

    broker.stop()

    assert not broker.running
