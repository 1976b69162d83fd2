"""Encode messages to wire bytes and decode wire bytes to messages."""

import json
from typing import Any, Final, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from protocol.errors import MalformedMessage
from protocol.messages import Ack, Config, Message, Status, Tap

MAX_PAYLOAD_BYTES: Final = 64 * 1024
_ADAPTER: Final[TypeAdapter[Tap | Ack | Status | Config]] = TypeAdapter(Message)
M = TypeVar("M", Tap, Ack, Status, Config)


def encode(message: BaseModel) -> bytes:
    """Serialise a message as compact UTF-8 JSON, leaving out unset optional fields."""
    return message.model_dump_json(exclude_none=True).encode()


def load_object(payload: bytes | str) -> dict[str, Any]:
    """Parse a payload into a JSON object and check the envelope (`v`, `type`)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MalformedMessage(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        # Decode explicitly: json.loads would also guess UTF-16/32 from a BOM.
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
    except UnicodeDecodeError as exc:
        raise MalformedMessage(f"payload is not UTF-8: {exc.reason}") from exc
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedMessage(f"payload is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise MalformedMessage(f"payload is a JSON {type(obj).__name__}, not an object")
    if "v" not in obj:
        raise MalformedMessage("missing protocol version field 'v'")
    if obj["v"] != 1 or isinstance(obj["v"], bool):
        raise MalformedMessage(f"unsupported protocol version {obj['v']!r}; this side speaks v1")
    return obj


def _explain(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def decode(payload: bytes | str) -> Tap | Ack | Status | Config:
    """Decode any v1 message; raise MalformedMessage saying what is wrong."""
    obj = load_object(payload)
    try:
        return _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise MalformedMessage(_explain(exc)) from exc


def decode_as(payload: bytes | str, kind: type[M]) -> M:
    """Decode a payload that must be of one message type."""
    obj = load_object(payload)
    expected = kind.model_fields["type"].default
    if obj.get("type") != expected:
        raise MalformedMessage(f"expected a {expected!r} message, got type {obj.get('type')!r}")
    try:
        return kind.model_validate(obj)
    except ValidationError as exc:
        raise MalformedMessage(_explain(exc)) from exc
