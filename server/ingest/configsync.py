"""Each registered reader's retained `config` topic, kept as the database says.

The wire protocol has the server push `config` (mode, room name, feedback) to
`rollcall/v1/readers/{id}/config`, retained, and readers apply it live: an
administrator who switches a door reader to check-out, or moves it to another
room, expects the reader to follow. Readers stamp each tap with their mode, and
the tap's mode wins over the database's, so without this push a change made in
the console would never reach the taps.

The ingest worker, which holds the MQTT connection in every deployment, calls
`poll` from its network loop. Every POLL_SECONDS it reads the reference
generation (one integer; triggers raise it with any change to readers or rooms,
migration 0009) and, when it moved or REFRESH_SECONDS have passed (for a
database whose triggers are missing, or a change made with them disabled), reads
every reader's config and publishes those that differ from what it last
published on this connection. After each reconnect everything is published
again: retained messages are idempotent, and a broker that restarted (which is
what drops the connection) may have lost them. Several workers sharing the
subscription publish the same payloads; a reader applies the same config twice,
which changes nothing.

A database that cannot be read is said once and retried on the next poll; taps
go on being recorded meanwhile.
"""

import logging
import time
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from protocol import encode, topics
from server.db.engine import Database
from server.db.lookups import GENERATION_SQL
from server.services.readers import reader_configs

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
REFRESH_SECONDS = 60.0

_GENERATION = text(GENERATION_SQL)


class ReaderConfigSync:
    """Publishes each reader's config when it changes; call `poll` from the network loop."""

    def __init__(
        self,
        database: Database,
        publish: Callable[[str, bytes], bool],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`publish(topic, payload)` sends one retained QoS 1 message; False if refused."""
        self._database = database
        self._publish = publish
        self._monotonic = monotonic
        # What this connection has been sent, by reader id.
        self._published: dict[str, bytes] = {}
        self._generation: int | None = None
        self._next_poll = 0.0
        self._next_refresh = 0.0
        self._failing = False

    def reset(self) -> None:
        """A new connection: publish everything on the next poll."""
        self._published.clear()
        self._generation = None
        self._next_poll = 0.0
        self._next_refresh = 0.0

    def poll(self) -> int:
        """If due, publish the configs that changed; return how many were published."""
        now = self._monotonic()
        if now < self._next_poll:
            return 0
        self._next_poll = now + POLL_SECONDS
        try:
            with self._database.engine.connect() as connection:
                generation = connection.scalar(_GENERATION)
                if generation == self._generation and now < self._next_refresh:
                    return 0
                configs = reader_configs(connection)
        except SQLAlchemyError as exc:
            if not self._failing:
                log.warning(
                    "reader configs not read (retrying every %.0f s): %s", POLL_SECONDS, exc
                )
            self._failing = True
            return 0
        self._failing = False
        published = 0
        complete = True
        for reader_id in sorted(configs):
            payload = encode(configs[reader_id])
            if self._published.get(reader_id) == payload:
                continue
            if self._publish(topics.config(reader_id), payload):
                self._published[reader_id] = payload
                published += 1
            else:
                complete = False
        if complete:
            # Otherwise the same generation is read again next time and the rest retried.
            self._generation = generation
            self._next_refresh = now + REFRESH_SECONDS
        if published:
            log.info("published the config of %d readers", published)
        return published
