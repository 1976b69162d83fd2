"""Errors raised by the reader agent.

ReaderAgentError
├── ConfigError        settings missing or invalid
├── CardSourceError    a card source cannot be opened or has failed for good
└── OutboxError        the durable outbox cannot be opened or written
"""


class ReaderAgentError(Exception):
    """Base of every error the reader agent raises."""


class ConfigError(ReaderAgentError):
    """Settings that are missing or invalid; the text names the setting."""


class CardSourceError(ReaderAgentError):
    """A card source that cannot be opened or has failed for good."""


class OutboxError(ReaderAgentError):
    """The durable outbox cannot be opened or written."""
