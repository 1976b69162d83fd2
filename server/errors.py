"""Errors raised by the server.

RollcallError
├── ConfigError          settings missing or invalid; the text names the setting
├── DomainError          a domain rule refuses its input
│   ├── InvalidWindow    a session whose check-in window is empty or not timezone-aware
│   ├── InvalidRule      a points rule set that contradicts itself or has no version in effect
│   ├── InvalidRecurrence  an RFC 5545 rule that cannot be parsed or never ends
│   ├── LedgerError      a reversal of an unknown or already reversed entry, an empty adjustment
│   ├── NotReady         absences asked for before the session may be closed
│   ├── Conflict         an action that contradicts the record's state (closing twice …)
│   ├── CardKeyError     a card master key or card answer that cannot be used (domain.cardkeys)
│   └── BadImportFile    an import file that cannot be read at all (services.imports)
├── StorageError         the database cannot be opened, or its schema is not usable
│   └── SchemaOutOfDate  the schema is behind the code: run `rollcall db upgrade`
├── BrokerError          the embedded MQTT broker cannot start or stop
├── NotFound             a member, session … asked for by id does not exist (HTTP 404)
├── Unhealthy            a health check failed; carries the report (HTTP 503)
├── SampleDataError      sample data cannot be seeded (the database is not empty)
├── ProvisioningError    a reader's credentials, the broker's files or the site CA cannot be made
├── AuthError            sign-in and permissions (services.auth; HTTP 401/403/429)
│   ├── NotSignedIn, Forbidden, BadCredentials, Throttled, CsrfRejected
│   └── DeviceRefused    a kiosk or screen token that is unknown or revoked (also KioskError)
└── KioskError           the kiosk and live screens (server.kiosk.errors)

Errors that belong to one package live beside it (their module is named above) and
subclass a branch of this tree, so the API's handlers map them like the rest.

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


class InvalidRule(DomainError):
    """A points rule set that contradicts itself, or no rule version in effect on a date."""


class InvalidRecurrence(DomainError):
    """An RFC 5545 recurrence rule that cannot be parsed or expands without end."""


class LedgerError(DomainError):
    """A ledger operation that would rewrite history or mean nothing."""


class NotReady(DomainError):
    """Absences cannot be decided yet: the session is open or readers may still hold taps."""


class Conflict(DomainError):
    """An action that contradicts the record's current state."""


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


class ProvisioningError(RollcallError):
    """A reader's credentials, the broker's password file or the site CA cannot be changed."""
