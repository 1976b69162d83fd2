"""What a server process runs besides HTTP: database, embedded broker, ingest worker, scheduler.

`rollcall serve` starts one of these before the HTTP server and stops it after;
`create_app(settings)` without one starts its own in the app's lifespan.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Literal, Self

from server.broker import EmbeddedBroker
from server.db.engine import Database, open_database
from server.db.migrate import ensure_current, upgrade
from server.domain.clock import SYSTEM_CLOCK, Clock
from server.errors import ConfigError, RollcallError
from server.ingest.endpoint import MqttEndpoint
from server.ingest.worker import IngestOptions, IngestWorker
from server.kiosk.hub import EventHub
from server.kiosk.relay import EventRelay
from server.services.cardauth import card_keyring
from server.services.scheduler import Pass, Scheduler, run_due
from server.services.taps import TapPolicy
from server.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Health:
    """Whether each part is working."""

    database_ok: bool
    database_url: str
    ingest_connected: bool | None
    ingest_queued: int
    ingest_counters: dict[str, int]
    broker_kind: Literal["embedded", "external"]
    broker_url: str

    @property
    def ok(self) -> bool:
        """True when the database answers and ingest (if running) is connected."""
        return self.database_ok and self.ingest_connected is not False


class ServerRuntime:
    """Opens the database (migrating it or checking it is current), the broker and ingest."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = SYSTEM_CLOCK,
        migrate: bool = True,
        ingest: bool = True,
        scheduler: bool = True,
        http: bool = True,
        ingest_ready_timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._migrate = migrate
        self._run_ingest = ingest
        # Whether this process serves HTTP: the console's requests want a checked
        # connection, and its kiosk and live screens want other processes' events.
        self._http = http
        # The settings can switch the scheduler off; a standalone ingest worker never runs it.
        self._run_scheduler = scheduler and settings.scheduler_enabled
        self._ready_timeout = ingest_ready_timeout
        self._database: Database | None = None
        self.broker: EmbeddedBroker | None = None
        self.ingest: IngestWorker | None = None
        self._endpoint: MqttEndpoint | None = None
        self.scheduler: Scheduler | None = None
        # Committed taps for the kiosk and live screens, from this or another process.
        self.events = EventHub()
        self.relay: EventRelay | None = None

    @property
    def clock(self) -> Clock:
        """The clock the server's rules read the time from."""
        return self._clock

    @property
    def database(self) -> Database:
        """The open database; only after start()."""
        if self._database is None:
            raise RuntimeError("the server runtime is not started")
        return self._database

    @property
    def endpoint(self) -> MqttEndpoint:
        """The MQTT broker in use; only after start()."""
        if self._endpoint is None:
            raise RuntimeError("the server runtime is not started")
        return self._endpoint

    @property
    def broker_kind(self) -> Literal["embedded", "external"]:
        """'embedded' or 'external'."""
        return "embedded" if self.settings.uses_embedded_broker else "external"

    def start(self) -> None:
        """Open and migrate the database, start the broker if embedded, start ingest."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        settings = self.settings
        # Without HTTP only the ingest uses the database, and it retries a batch whose
        # connection turns out dead: no ping before every batch.
        self._database = open_database(settings.resolved_database_url, pre_ping=self._http)
        if self._migrate:
            revision = upgrade(self._database)
            log.info("database %s at revision %s", self._database.display_url, revision)
        else:
            ensure_current(self._database)
        if settings.mqtt_url is None:
            self.broker = EmbeddedBroker(
                settings.embedded_broker_host, settings.embedded_broker_port
            )
            self.broker.start()
            self._endpoint = MqttEndpoint(self.broker.host, self.broker.port)
        else:
            self._endpoint = MqttEndpoint.parse(settings.mqtt_url)
        self.relay = EventRelay(self._endpoint, self.events, listen=self._http)
        self.relay.start()
        if self._run_ingest:
            options = IngestOptions(
                client_id=settings.ingest_client_id,
                shared=settings.ingest_shared,
                batch_size=settings.ingest_batch_size,
                policy=TapPolicy(
                    zone=settings.zone,
                    skew_tolerance=settings.skew_tolerance,
                    card_keys=card_keyring(settings),
                ),
            )
            self.ingest = IngestWorker(
                self._endpoint,
                self._database,
                options,
                clock=self._clock,
                on_committed=self.relay.publish,
            )
            self.relay.send_through(self.ingest.publish_event)
            self.ingest.start()
            # Wait for the subscription, so nothing published after start() is missed.
            if not self.ingest.wait_ready(self._ready_timeout):
                if self.broker is not None:
                    # Our own broker is up: failing to subscribe is a bug, not a blip.
                    raise RollcallError("ingest could not subscribe to the embedded broker")
                log.warning(
                    "MQTT broker %s not reachable yet; ingest keeps retrying in the background",
                    self._endpoint.url,
                )
        # Only a process that records taps waits for the relay: one without ingest (API
        # only, or a broker not there yet) must not stall its start-up on a broker.
        reachable = self.ingest is not None and self.ingest.connected
        if reachable and not self.relay.wait_ready(self._ready_timeout):
            # Refused by the broker's ACL (logged by the relay) or still connecting.
            log.warning("until subscribed, screens here see only taps this process records")
        if self._run_scheduler:
            self.scheduler = Scheduler(
                self._due_work,
                clock=self._clock,
                interval=timedelta(seconds=settings.scheduler_interval_seconds),
            )
            self.scheduler.start()

    def _due_work(self, now: datetime) -> Pass:
        """One scheduler pass: freeze started sessions' rosters, close eligible sessions."""
        return run_due(
            self.database.write_sessions, now, self.settings.zone, self.settings.absence_grace
        )

    def stop(self) -> None:
        """Stop the scheduler and ingest, then the broker, then close the database; safe twice."""
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        if self.ingest is not None:
            self.ingest.stop()
            self.ingest = None
        if self.relay is not None:
            self.relay.stop()
            self.relay = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self._database is not None:
            self._database.dispose()
            self._database = None

    def health(self) -> Health:
        """Check the database now and report ingest and broker state."""
        database = self.database
        ingest = self.ingest
        return Health(
            database_ok=database.ping(),
            database_url=database.display_url,
            ingest_connected=ingest.connected if ingest is not None else None,
            ingest_queued=ingest.queued if ingest is not None else 0,
            ingest_counters=ingest.counters.snapshot() if ingest is not None else {},
            broker_kind=self.broker_kind,
            broker_url=self.endpoint.url,
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def require_external_broker(settings: Settings) -> None:
    """Refuse to run the ingest worker alone when no broker is configured."""
    if settings.mqtt_url is None:
        raise ConfigError(
            "mqtt_url is not set: a standalone ingest worker needs an external broker "
            "(the embedded broker runs only inside `rollcall serve`)"
        )
