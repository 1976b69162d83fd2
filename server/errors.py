"""Errors raised by the server.

RollcallError
├── ConfigError          settings missing or invalid; the text names the setting
├── DomainError          a domain rule refuses its input
│   └── InvalidWindow    a session whose check-in window is empty or not timezone-aware
├── StorageError         the database cannot be opened, or its schema is not usable
│   └── SchemaOutOfDate  the schema is behind the code: run `rollcall db upgrade`
├── BrokerError          the embedded MQTT broker cannot start or stop
├── NotFound             a member, session … asked for by id does not exist (HTTP 404)
├── Unhealthy            a health check failed; carries the report (HTTP 503)
└── SampleDataError      sample data cannot be seeded (the database is not empty)

Library errors are translated where they enter our code, with
`raise OurError(...) from exc`, so callers handle one family.
"""

from typing import Any


class RollcallError(Exception):
    """Base of every error the server raises."""


class ConfigError(RollcallError):
    """Settings that are missing or invalid; the text names the setting."""


class DomainError(RollcallError):
    """A domain rule refuses its input."""


class InvalidWindow(DomainError):
    """A session whose check-in window is empty, inverted or uses naive datetimes."""


class StorageError(RollcallError):
    """The database cannot be opened or used."""


class SchemaOutOfDate(StorageError):
    """The database schema is older than the code; run `rollcall db upgrade`."""


class BrokerError(RollcallError):
    """The embedded MQTT broker cannot start or stop."""


class NotFound(RollcallError):
    """A record asked for by its identifier does not exist."""

    def __init__(self, kind: str, key: object) -> None:
        super().__init__(f"no {kind} {key!s}")
        self.kind = kind
        self.key = key


class Unhealthy(RollcallError):
    """A health check failed; `report` says which part."""

    def __init__(self, report: dict[str, Any]) -> None:
        super().__init__("service unhealthy")
        self.report = report


class SampleDataError(RollcallError):
    """Sample data cannot be seeded, for example into a database that has data."""
