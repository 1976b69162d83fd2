"""The generated Mosquitto configuration keeps every reader to its own topics."""

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol import topics
from server.db.engine import Database
from server.provisioning.broker_files import SERVER_ACCOUNT
from server.provisioning.readers import (
    ProvisionedReader,
    ReaderRequest,
    list_readers,
    provision_reader,
    revoke_reader,
)
from tests.integration.deploy.clients import REFUSALS, Client, ClientCertificate
from tests.integration.deploy.conftest import ROOM, ProductionBroker

pytestmark = pytest.mark.integration
Connect = Callable[..., Client]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Make connected clients (asserting the broker accepted them); all closed afterwards."""
    made: list[Client] = []

    def make(port: int, **kwargs: Any) -> Client:
        client = Client(port, **kwargs)
        made.append(client)
        assert client.connect() == "Success"
        return client

    yield make
    for client in made:
        client.close()


def provision(
    database: Database, broker: ProductionBroker, reader_id: str, *, tls: bool = False
) -> ProvisionedReader:
    reader = provision_reader(
        database, ReaderRequest(reader_id, ROOM, tls=tls), broker.paths, broker.address
    )
    if reader.password is not None:
        wait_until_reloaded(broker, reader_id, reader.password, accepted=True)
    return reader


def wait_until_reloaded(
    broker: ProductionBroker, username: str, password: str, *, accepted: bool
) -> None:
    """Wait until the broker has applied the password file that provisioning SIGHUPed it for.

    Mosquitto handles SIGHUP between turns of its loop: a CONNECT that arrives
    with the signal can still be checked against the old file (seen once in CI,
    under load: a reader provisioned a moment before was refused). Fails if the
    broker has not applied it after five seconds.
    """
    deadline = time.monotonic() + 5.0
    while True:
        client = Client(broker.layout.password_port, username=username, password=password)
        try:
            answer = client.connect()
        finally:
            client.close()
        if (answer == "Success") == accepted:
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"the broker still answers {answer!r} to {username} five seconds after SIGHUP"
            )
        time.sleep(0.05)


def as_reader(connect: Connect, broker: ProductionBroker, reader: ProvisionedReader) -> Client:
    return connect(broker.layout.password_port, username=reader.reader_id, password=reader.password)


def as_server(connect: Connect, broker: ProductionBroker) -> Client:
    return connect(
        broker.layout.password_port, username=SERVER_ACCOUNT, password=broker.server_password
    )


def assert_nothing_arrives(client: Client, timeout: float = 1.0) -> None:
    try:
        message = client.next(timeout)
    except TimeoutError:
        return
    pytest.fail(f"{message.topic} arrived: {message.payload!r}")


def test_reader_publishes_its_taps_and_reads_its_acks(
    production_broker: ProductionBroker, site_database: Database, connect: Connect
) -> None:
    reader = provision(site_database, production_broker, "hall-a-1")
    server = as_server(connect, production_broker)
    assert not server.subscribe(topics.all_readers("taps"))[0].is_failure
    client = as_reader(connect, production_broker, reader)
    assert not client.subscribe(topics.acks("hall-a-1"))[0].is_failure

    client.publish(topics.taps("hall-a-1"), b"tap-1")
    received = server.next()
    server.publish(topics.acks("hall-a-1"), b"ack-1")

    assert (received.topic, received.payload) == (topics.taps("hall-a-1"), b"tap-1")
    ack = client.next()
    assert (ack.topic, ack.payload) == (topics.acks("hall-a-1"), b"ack-1")


def test_server_reads_taps_on_the_shared_subscription(
    production_broker: ProductionBroker, site_database: Database, connect: Connect
) -> None:
    reader = provision(site_database, production_broker, "hall-a-1")
    server = as_server(connect, production_broker)
    assert not server.subscribe(topics.shared(topics.all_readers("taps")))[0].is_failure

    as_reader(connect, production_broker, reader).publish(topics.taps("hall-a-1"), b"tap-1")

    assert server.next().payload == b"tap-1"


def test_reader_cannot_publish_as_another_reader(
    production_broker: ProductionBroker, site_database: Database, connect: Connect
) -> None:
    mallory = provision(site_database, production_broker, "mallory")
    provision(site_database, production_broker, "victim")
    server = as_server(connect, production_broker)
    server.subscribe(topics.all_readers("taps"))
    server.subscribe(topics.all_readers("status"))
    client = as_reader(connect, production_broker, mallory)

    client.publish(topics.taps("victim"), b"forged tap")
    client.publish(topics.status("victim"), b"forged status")
    client.publish(topics.taps("mallory"), b"own tap")  # arrives after any forged one would

    assert server.next().payload == b"own tap"
    assert_nothing_arrives(server)


def test_reader_cannot_subscribe_to_everything(
    production_broker: ProductionBroker, site_database: Database, connect: Connect
) -> None:
    nosy = provision(site_database, production_broker, "nosy")
    other = provision(site_database, production_broker, "other")
    client = as_reader(connect, production_broker, nosy)
    codes = client.subscribe("#")

    as_reader(connect, production_broker, other).publish(topics.taps("other"), b"tap")
    as_server(connect, production_broker).publish(topics.acks("other"), b"ack")

    # Mosquitto 2.0 may refuse the subscription (SUBACK 0x80) or filter each delivery.
    assert codes[0].is_failure or client.messages.empty()
    assert_nothing_arrives(client)


def test_reader_cannot_read_another_readers_acks(
    production_broker: ProductionBroker, site_database: Database, connect: Connect
) -> None:
    nosy = provision(site_database, production_broker, "nosy")
    provision(site_database, production_broker, "other")
    client = as_reader(connect, production_broker, nosy)
    client.subscribe(topics.acks("other"))
    client.subscribe(topics.config("other"))
    client.subscribe(topics.acks("nosy"))
    server = as_server(connect, production_broker)

    server.publish(topics.acks("other"), b"not yours")
    server.publish(topics.config("other"), b"not yours either")
    server.publish(topics.acks("nosy"), b"yours")

    assert client.next().payload == b"yours"
    assert_nothing_arrives(client)


def test_server_processes_share_events_that_readers_cannot_read_or_forge(
    production_broker: ProductionBroker, site_database: Database, connect: Connect
) -> None:
    nosy = provision(site_database, production_broker, "nosy")
    reader = as_reader(connect, production_broker, nosy)
    reader.subscribe(topics.server_events())
    web = as_server(connect, production_broker)
    assert not web.subscribe(topics.server_events())[0].is_failure

    reader.publish(topics.server_events(), b"forged event")
    as_server(connect, production_broker).publish(topics.server_events(), b"committed")

    assert web.next().payload == b"committed"
    assert_nothing_arrives(web)
    assert_nothing_arrives(reader)


@pytest.mark.parametrize(
    ("username", "password"),
    [("stranger", "guess"), ("hall-a-1", "wrong password"), (None, None)],
    ids=["unknown-user", "wrong-password", "anonymous"],
)
def test_unprovisioned_clients_are_refused(
    production_broker: ProductionBroker,
    site_database: Database,
    username: str | None,
    password: str | None,
) -> None:
    provision(site_database, production_broker, "hall-a-1")
    client = Client(production_broker.layout.password_port, username=username, password=password)
    try:
        assert client.connect() in REFUSALS
    finally:
        client.close()


def test_revoked_reader_is_refused(
    production_broker: ProductionBroker, site_database: Database, connect: Connect
) -> None:
    reader = provision(site_database, production_broker, "hall-a-1")
    as_reader(connect, production_broker, reader).close()

    revocation = revoke_reader(site_database, "hall-a-1", production_broker.paths)

    assert revocation.password_removed
    assert "SIGHUP" in revocation.reload_note
    wait_until_reloaded(production_broker, "hall-a-1", reader.password, accepted=False)
    client = Client(
        production_broker.layout.password_port, username="hall-a-1", password=reader.password
    )
    try:
        assert client.connect() in REFUSALS
    finally:
        client.close()
    [listed] = list_readers(site_database, production_broker.paths)
    assert (listed.reader_id, listed.room_code, listed.credential) == ("hall-a-1", ROOM, "none")


def write_certificate(
    tmp_path: Path, reader: ProvisionedReader, ca_file: Path
) -> ClientCertificate:
    assert reader.certificate is not None
    cert_file = tmp_path / f"{reader.reader_id}.pem"
    key_file = tmp_path / f"{reader.reader_id}.key"
    cert_file.write_bytes(reader.certificate.certificate_pem)
    key_file.write_bytes(reader.certificate.key_pem)
    return ClientCertificate(ca_file, cert_file, key_file)


def test_reader_with_a_client_certificate_connects_as_itself(
    production_broker: ProductionBroker,
    site_database: Database,
    connect: Connect,
    tmp_path: Path,
) -> None:
    reader = provision(site_database, production_broker, "hall-b-1", tls=True)
    server = as_server(connect, production_broker)
    server.subscribe(topics.all_readers("taps"))
    tls = write_certificate(tmp_path, reader, production_broker.ca_file)
    client = connect(production_broker.layout.tls_port, tls=tls)

    client.publish(topics.taps("someone-else"), b"forged")
    client.publish(topics.taps("hall-b-1"), b"tap over TLS")

    assert server.next().payload == b"tap over TLS"
    assert_nothing_arrives(server)


def test_tls_without_a_client_certificate_is_refused(
    production_broker: ProductionBroker, site_database: Database
) -> None:
    reader = provision(site_database, production_broker, "hall-b-1")
    client = Client(
        production_broker.layout.tls_port,
        username=reader.reader_id,
        password=reader.password,
        tls=ClientCertificate(production_broker.ca_file, None, None),
    )
    try:
        # The TLS handshake fails, or the broker drops the connection before any CONNACK.
        with pytest.raises((OSError, TimeoutError)):
            client.connect(timeout=3)
    finally:
        client.close()


def test_revoked_certificate_is_refused(
    production_broker: ProductionBroker,
    site_database: Database,
    connect: Connect,
    tmp_path: Path,
) -> None:
    reader = provision(site_database, production_broker, "hall-b-1", tls=True)
    tls = write_certificate(tmp_path, reader, production_broker.ca_file)
    connect(production_broker.layout.tls_port, tls=tls).close()

    revocation = revoke_reader(site_database, "hall-b-1", production_broker.paths)
    production_broker.restart()  # as the note says: Mosquitto 2.0 reads its CRL only at start

    assert reader.certificate is not None
    assert revocation.revoked_serial == reader.certificate.serial
    assert "restart the broker" in revocation.reload_note
    client = Client(production_broker.layout.tls_port, tls=tls)
    try:
        with pytest.raises((OSError, TimeoutError)):
            client.connect(timeout=3)
    finally:
        client.close()
