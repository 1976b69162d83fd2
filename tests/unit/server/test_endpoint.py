"""MQTT URLs."""

import pytest

from server.errors import ConfigError
from server.ingest.endpoint import MqttEndpoint


def test_plain_url_with_credentials() -> None:
    endpoint = MqttEndpoint.parse("mqtt://ingest:p%40ss@broker.example:1884")

    assert endpoint == MqttEndpoint("broker.example", 1884, False, "ingest", "p@ss")
    assert endpoint.url == "mqtt://broker.example:1884"
    assert "p@ss" not in repr(endpoint)


def test_tls_default_port() -> None:
    endpoint = MqttEndpoint.parse("mqtts://broker.example")

    assert (endpoint.port, endpoint.tls, endpoint.username) == (8883, True, None)
    assert endpoint.url == "mqtts://broker.example:8883"


def test_ipv6_host() -> None:
    assert MqttEndpoint.parse("mqtt://[::1]:1883").url == "mqtt://[::1]:1883"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://broker", "scheme"),
        ("mqtt://", "no host"),
        ("mqtt://broker:99999", "bad port"),
        ("mqtt://u:secret@broker/path", "unexpected path"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        MqttEndpoint.parse(url)
    assert "secret" not in str(caught.value)
