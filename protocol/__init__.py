"""Rollcall wire protocol v1: topics, message models, codec and signing.

This package is the contract between reader agents and the server. It imports
nothing else of ours, so both sides can depend on it.
"""

from protocol.codec import decode, decode_as, encode
from protocol.errors import MalformedMessage, ProtocolError, SignatureError
from protocol.messages import (
    Ack,
    AckResult,
    CardAuth,
    CardId,
    CardTech,
    Config,
    Display,
    FeedbackOptions,
    Message,
    ReaderState,
    Status,
    Tap,
    TapMode,
)

PROTOCOL_VERSION = 1

__all__ = [
    "PROTOCOL_VERSION",
    "Ack",
    "AckResult",
    "CardAuth",
    "CardId",
    "CardTech",
    "Config",
    "Display",
    "FeedbackOptions",
    "MalformedMessage",
    "Message",
    "ProtocolError",
    "ReaderState",
    "SignatureError",
    "Status",
    "Tap",
    "TapMode",
    "decode",
    "decode_as",
    "encode",
]
