"""Hypothesis strategies for what may arrive on a reader's taps topic: garbage and near-misses.

Random bytes and JSON; valid taps with one thing wrong (a missing key, a wrong
type, a huge string, a bad UUID or timestamp, nested garbage, broken UTF-8,
truncation, an oversized body); and the golden protocol messages, mutated.

Every generated payload that names an event id names EVENT_PLACEHOLDER; `fresh`
gives each one a new id, so no two payloads claim the same event.
"""

import json
import uuid
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from protocol import MalformedMessage, Tap, decode_as

GOLDEN = Path(__file__).parents[1] / "contract" / "golden"
EVENT_PLACEHOLDER = "00000000-0000-4000-8000-0000000e7e7e"
UNKNOWN_UID = "DEADBEEF01"  # no member holds this card: a valid mutant credits nothing
BOOT = "5d2f7a90-8c1b-4e3f-a6d4-2b9c0e1f3a55"
OVERSIZED = 64 * 1024 + 1  # protocol.codec.MAX_PAYLOAD_BYTES, plus one
NESTED = "@nested@"


def base_tap(reader_id: str) -> dict[str, Any]:
    """A valid tap of an unknown card on `reader_id`, stamped at a fixed past moment."""
    return {
        "v": 1,
        "type": "tap",
        "event_id": EVENT_PLACEHOLDER,
        "reader_id": reader_id,
        "boot_id": BOOT,
        "seq": 7,
        "card": {"tech": "iso14443a", "uid": UNKNOWN_UID},
        "occurred_at": "2026-01-05T01:00:00Z",
        "clock_synced": True,
        "mode": "checkin",
    }


def fresh(payload: bytes) -> bytes:
    """The payload with its placeholder event id (if any) replaced by a new one."""
    return payload.replace(EVENT_PLACEHOLDER.encode(), str(uuid.uuid4()).encode())


def is_valid_tap(payload: bytes, reader_id: str) -> bool:
    """The oracle: the protocol decodes it as a tap of the topic's reader."""
    try:
        return decode_as(payload, Tap).reader_id == reader_id
    except MalformedMessage:
        return False
    except OverflowError:  # a decoder bug the worker must survive (see known_hard)
        return False


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["", "null", "checkin", "iso14443a", EVENT_PLACEHOLDER, "04A1B2C3"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

FIELDS = (
    "v",
    "type",
    "event_id",
    "reader_id",
    "boot_id",
    "seq",
    "card",
    "occurred_at",
    "clock_synced",
    "mode",
)
bad_uuids = st.one_of(
    st.text(max_size=40),
    st.integers(),
    st.just(EVENT_PLACEHOLDER[:-1] + "g"),
    st.just(EVENT_PLACEHOLDER.replace("-", "")[:31]),
    st.just("{" + EVENT_PLACEHOLDER + "}x"),
)
bad_times = st.one_of(
    st.text(max_size=30),
    st.integers(),
    st.floats(),
    st.sampled_from(
        [
            "2026-01-05T01:00:00",  # no zone: the protocol wants aware times
            "2026-13-45T99:99:99Z",
            "yesterday",
            "",
            "2026-01-05 01:00:00+25:00",
            "9999-12-31T23:59:59.999999-23:59",
        ]
    ),
)


@st.composite
def mutated_taps(draw: st.DrawFn, reader_id: str) -> bytes:
    """A valid tap with one field broken (or deleted, or a whole part replaced)."""
    tap = base_tap(reader_id)
    kind = draw(
        st.sampled_from(
            ["drop", "retype", "huge", "uuid", "time", "nested", "card", "extra", "uid"]
        )
    )
    if kind == "drop":
        for key in draw(st.sets(st.sampled_from(FIELDS[:-1]), min_size=1)):
            del tap[key]
    elif kind == "retype":
        tap[draw(st.sampled_from(FIELDS))] = draw(json_values)
    elif kind == "huge":
        field = draw(st.sampled_from(["reader_id", "event_id", "occurred_at", "mode", "uid"]))
        text = "A" * draw(st.integers(min_value=65, max_value=70_000))
        if field == "uid":
            tap["card"]["uid"] = text + "A"  # an odd number of hex digits, over 64 of them
        else:
            tap[field] = text
    elif kind == "uuid":
        tap[draw(st.sampled_from(["event_id", "boot_id"]))] = draw(bad_uuids)
    elif kind == "time":
        tap["occurred_at"] = draw(bad_times)
    elif kind == "nested":
        # Written out as text: json.dumps itself refuses nesting this deep.
        depth = draw(st.integers(min_value=1, max_value=5000))
        tap[draw(st.sampled_from(FIELDS))] = NESTED
        return _dump(tap).replace(f'"{NESTED}"'.encode(), b"[" * depth + b"]" * depth)
    elif kind == "card":
        tap["card"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "tech": st.sampled_from(["iso14443a", "mifare", "", "ISO14443A"]) | json_values,
                    "uid": st.text(max_size=70) | json_values,
                    "auth": json_values,
                },
            )
        )
    elif kind == "extra":
        # Unknown fields are ignored: break a known one too (pydantic's lax mode may mend it).
        tap.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4)))
        tap["seq"] = draw(st.sampled_from([-1, 2**63, "7", 7.5, None, True]))
    else:
        tap["card"]["uid"] = draw(st.sampled_from(["", "0", "XYZ", "04:A1", "04 A1", "é"]))
    return _dump(tap)


@st.composite
def broken_bytes(draw: st.DrawFn, reader_id: str) -> bytes:
    """A valid tap's bytes broken in transit: invalid UTF-8, truncated, oversized, flipped."""
    payload = _dump(base_tap(reader_id))
    kind = draw(st.sampled_from(["utf8", "truncate", "oversize", "flip"]))
    if kind == "utf8":
        at = draw(st.integers(min_value=0, max_value=len(payload)))
        bad = draw(
            st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
        )
        return payload[:at] + bad + payload[at:]
    if kind == "truncate":
        return payload[: draw(st.integers(min_value=0, max_value=len(payload) - 1))]
    if kind == "oversize":
        tap = base_tap(reader_id)
        tap["padding"] = "x" * OVERSIZED
        return _dump(tap)
    at = draw(st.integers(min_value=0, max_value=len(payload) - 1))
    return payload[:at] + bytes([payload[at] ^ draw(st.integers(1, 255))]) + payload[at + 1 :]


def _golden() -> list[bytes]:
    found = []
    for path in sorted(GOLDEN.glob("*.json")):
        obj = json.loads(path.read_text(encoding="utf-8"))
        if "event_id" in obj:
            obj["event_id"] = EVENT_PLACEHOLDER
        found.append(_dump(obj))
    return found


@st.composite
def mutated_golden(draw: st.DrawFn) -> bytes:
    """A golden message (another reader's tap, an ack, a status, a config), maybe damaged."""
    payload = draw(st.sampled_from(_golden()))
    if draw(st.booleans()):
        at = draw(st.integers(min_value=0, max_value=len(payload) - 1))
        payload = payload[:at] + draw(st.binary(max_size=4)) + payload[at + 1 :]
    return payload


def known_hard(reader_id: str) -> list[bytes]:
    """Payloads that once broke something, always tried besides what hypothesis draws."""
    found = []
    # Valid RFC 3339 whose UTC form falls outside year 1-9999: once an OverflowError.
    for moment in ("9999-12-31T23:59:59.999999-23:59", "0001-01-01T00:00:00+23:59"):
        tap = base_tap(reader_id)
        tap["occurred_at"] = moment
        found.append(_dump(tap))
    found.append(b"[" * 100_000 + b"]" * 100_000)  # deeper than any parser's recursion
    found.append(
        b'{"v": 1, "type": "tap", "seq": NaN, "event_id": "' + EVENT_PLACEHOLDER.encode() + b'"}'
    )
    return found


def overflowing_status() -> bytes:
    """A status whose oldest pending tap is stamped past year 9999 in UTC."""
    obj = json.loads((GOLDEN / "status_online.json").read_text(encoding="utf-8"))
    obj["oldest_pending_at"] = "9999-12-31T23:59:59-23:59"
    return _dump(obj)


def payloads(reader_id: str) -> st.SearchStrategy[bytes]:
    """Anything at all, weighted towards near-misses of a valid tap of `reader_id`."""
    return st.one_of(
        st.binary(max_size=200),
        json_values.map(_dump),
        mutated_taps(reader_id),
        broken_bytes(reader_id),
        mutated_golden(),
    )
