"""Errors raised by the reader agent.

ReaderAgentError
├── ConfigError        settings missing or invalid
├── CardSourceError    a card source cannot be opened or has failed for good
├── CardReadError      one card could not be read (pulled away, refused an APDU);
│                      the source logs it and carries on
├── FeedbackError      a feedback device (GPIO buzzer or LED) cannot be driven
└── OutboxError        the durable outbox cannot be opened or written
"""


class ReaderAgentError(Exception):
    """Base of every error the reader agent raises."""


class ConfigError(ReaderAgentError):
    """Settings that are missing or invalid; the text names the setting."""


class CardSourceError(ReaderAgentError):
    """A card source that cannot be opened or has failed for good."""


class CardReadError(ReaderAgentError):
    """One card could not be read; the text says why (removed, status word, bad data)."""


class FeedbackError(ReaderAgentError):
    """A feedback device cannot be opened or driven; the text names the device."""


class OutboxError(ReaderAgentError):
    """The durable outbox cannot be opened or written."""
