"""The v1 MQTT topic tree: every topic either side uses is built here.

rollcall/v1/readers/{reader_id}/taps    reader → server   QoS 1
rollcall/v1/readers/{reader_id}/acks    server → reader   QoS 1
rollcall/v1/readers/{reader_id}/status  reader → all      QoS 1, retained, last will
rollcall/v1/readers/{reader_id}/config  server → reader   QoS 1, retained
rollcall/v1/server/events               server → server   QoS 0 (ingest → web pages; ids only)
"""

import re
from typing import Final, Literal

from protocol.errors import MalformedMessage

PREFIX: Final = "rollcall/v1/readers"
READER_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
SHARED_GROUP: Final = "rollcall-ingest"
QOS: Final = 1

Channel = Literal["taps", "acks", "status", "config"]
CHANNELS: Final[tuple[Channel, ...]] = ("taps", "acks", "status", "config")


def check_reader_id(reader_id: str) -> str:
    """Return `reader_id` unchanged if valid, else raise MalformedMessage."""
    if not READER_ID_PATTERN.fullmatch(reader_id):
        raise MalformedMessage(f"invalid reader_id {reader_id!r}: need 1-64 of [A-Za-z0-9_-]")
    return reader_id


def topic(reader_id: str, channel: Channel) -> str:
    """Return the topic of one reader's channel."""
    return f"{PREFIX}/{check_reader_id(reader_id)}/{channel}"


def taps(reader_id: str) -> str:
    """Topic a reader publishes its taps on."""
    return topic(reader_id, "taps")


def acks(reader_id: str) -> str:
    """Topic the server answers a reader's taps on."""
    return topic(reader_id, "acks")


def status(reader_id: str) -> str:
    """Retained topic with a reader's online state (also its last will)."""
    return topic(reader_id, "status")


def config(reader_id: str) -> str:
    """Retained topic with the configuration the server pushes to a reader."""
    return topic(reader_id, "config")


def server_events() -> str:
    """Topic the ingest publishes what it committed on, for the web pages (kiosk, live screen)."""
    return "rollcall/v1/server/events"


def all_readers(channel: Channel) -> str:
    """Subscription filter matching one channel of every reader."""
    return f"{PREFIX}/+/{channel}"


def shared(filter_: str, group: str = SHARED_GROUP) -> str:
    """Shared-subscription form of a filter, so several workers split the load."""
    return f"$share/{group}/{filter_}"


def parse(topic_name: str) -> tuple[str, Channel]:
    """Split a concrete topic into (reader_id, channel); raise MalformedMessage if foreign."""
    prefix, sep, rest = topic_name.rpartition("/")
    head, sep2, reader_id = prefix.rpartition("/")
    if not sep or not sep2 or head != PREFIX or rest not in CHANNELS:
        raise MalformedMessage(f"not a rollcall v1 reader topic: {topic_name!r}")
    check_reader_id(reader_id)
    channel: Channel = rest
    return reader_id, channel
