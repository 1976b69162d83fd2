"""A Mosquitto started with the production configuration that `rollcall broker config` makes.

Only the paths and ports differ from the Debian layout: everything lives in the
test's directory, on free ports below the ephemeral range.
"""

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
from sqlalchemy import select

from server.db.engine import Database, open_database
from server.db.migrate import upgrade
from server.db.models import Room
from server.provisioning.broker_files import (
    SERVER_ACCOUNT,
    BrokerLayout,
    render_acl,
    render_mosquitto_conf,
)
from server.provisioning.certificates import CertificateAuthority
from server.provisioning.passwords import PasswordFile, generate_password
from server.provisioning.readers import BrokerAddress, CredentialPaths
from tests.support.mosquitto import MOSQUITTO
from tests.support.ports import free_port, wait_for_port

ROOM = "R101"


@dataclass
class ProductionBroker:
    """The running broker, its files, and the server account's password."""

    layout: BrokerLayout
    directory: Path
    server_password: str
    process: subprocess.Popen[bytes]

    @property
    def paths(self) -> CredentialPaths:
        """Where provisioning writes credentials for this broker."""
        return CredentialPaths(
            password_file=Path(self.layout.password_file),
            ca_dir=Path(self.layout.ca_dir),
            broker_pid_file=self.directory / "mosquitto.pid",
        )

    @property
    def address(self) -> BrokerAddress:
        """How readers reach it."""
        return BrokerAddress("127.0.0.1", self.layout.password_port, self.layout.tls_port)

    @property
    def ca_file(self) -> Path:
        """The site CA certificate."""
        return Path(self.layout.ca_dir) / "ca.pem"

    def restart(self) -> None:
        """Stop the broker and start it again with the same files."""
        self.stop()
        self.process = _start(self.directory)
        _wait_until_listening(self)

    def stop(self) -> None:
        """SIGTERM the broker and wait for it."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=10)

    def log(self) -> str:
        """What the broker has logged so far."""
        return (self.directory / "mosquitto.log").read_text(errors="replace")


@pytest.fixture
def production_broker(tmp_path: Path) -> Iterator[ProductionBroker]:
    """Mosquitto running the generated production configuration, with a site CA."""
    if not Path(MOSQUITTO).exists():
        pytest.fail("Mosquitto is missing: `apt-get install mosquitto`", pytrace=False)
    directory = tmp_path / "broker"
    (directory / "data").mkdir(parents=True)
    base = PurePosixPath(directory.as_posix())
    layout = BrokerLayout(
        name="test",
        acl_file=base / "acl",
        password_file=base / "passwd",
        ca_dir=base / "ca",
        persistence_dir=base / "data",
        plain_bind="127.0.0.1",
        pid_file=base / "mosquitto.pid",
        password_port=free_port(),
        tls_port=free_port(),
        # As root, Mosquitto would drop to the `mosquitto` user, who cannot read tmp_path.
        run_as="root" if os.geteuid() == 0 else None,
    )
    ca = CertificateAuthority.init(directory / "ca")
    ca.issue_broker(["127.0.0.1", "localhost"])
    (directory / "acl").write_text(render_acl())
    (directory / "mosquitto.conf").write_text(render_mosquitto_conf(layout))
    server_password = generate_password()
    PasswordFile(directory / "passwd").set(SERVER_ACCOUNT, server_password)
    broker = ProductionBroker(layout, directory, server_password, _start(directory))
    try:
        _wait_until_listening(broker)
        yield broker
    finally:
        broker.stop()


def _start(directory: Path) -> subprocess.Popen[bytes]:
    with (directory / "mosquitto.log").open("ab") as log:
        return subprocess.Popen(
            [MOSQUITTO, "-c", str(directory / "mosquitto.conf")],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def _wait_until_listening(broker: ProductionBroker) -> None:
    for port in (broker.layout.password_port, broker.layout.tls_port):
        try:
            wait_for_port("127.0.0.1", port)
        except TimeoutError:
            pytest.fail(f"Mosquitto did not start:\n{broker.log()}", pytrace=False)


@pytest.fixture
def site_database(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database with one room, R101."""
    database = open_database(f"sqlite:///{tmp_path / 'rollcall.sqlite3'}")
    upgrade(database)
    with database.write_sessions.begin() as session:
        session.add(Room(code=ROOM, name="党员活动室"))
    with database.sessions() as session:
        assert session.scalars(select(Room.code)).all() == [ROOM]
    try:
        yield database
    finally:
        database.dispose()
