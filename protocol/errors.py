"""Errors raised by the protocol package.

ProtocolError
├── MalformedMessage   payload is not a valid v1 message (bad JSON, field, type, topic)
└── SignatureError     a `sig` is missing where required, or does not verify
"""


class ProtocolError(Exception):
    """Base of every error the protocol package raises."""


class MalformedMessage(ProtocolError):
    """A payload or topic that is not a valid v1 message; the text says why."""


class SignatureError(ProtocolError):
    """A message signature that is missing or does not match."""
