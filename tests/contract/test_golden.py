"""Golden v1 messages: every one decodes, and re-encodes to the same JSON object."""

import json
from pathlib import Path

import pytest

from protocol import Ack, Config, Status, Tap, decode, decode_as, encode

GOLDEN = Path(__file__).parent / "golden"
FILES = sorted(GOLDEN.glob("*.json"))
KINDS = {"tap": Tap, "ack": Ack, "status": Status, "config": Config}


def test_golden_set_covers_every_message_type() -> None:
    types = {json.loads(p.read_text())["type"] for p in FILES}
    assert types == set(KINDS)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_golden_round_trips(path: Path) -> None:
    original = json.loads(path.read_text(encoding="utf-8"))
    message = decode(path.read_bytes())
    assert isinstance(message, KINDS[original["type"]])
    assert json.loads(encode(message)) == original


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_golden_decodes_as_its_own_type_only(path: Path) -> None:
    kind = KINDS[json.loads(path.read_text())["type"]]
    assert type(decode_as(path.read_bytes(), kind)) is kind


def test_unknown_fields_are_ignored_within_v1() -> None:
    obj = json.loads((GOLDEN / "tap_checkin.json").read_text())
    obj["firmware"] = "2.1"
    obj["card"]["sak"] = "08"
    message = decode(json.dumps(obj))
    assert isinstance(message, Tap)
    assert "firmware" not in json.loads(encode(message))
