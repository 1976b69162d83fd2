"""Topic names are built and parsed in one place, and refuse foreign shapes."""

import pytest

from protocol import MalformedMessage, topics


def test_topics_of_one_reader() -> None:
    assert topics.taps("room-101") == "rollcall/v1/readers/room-101/taps"
    assert topics.acks("room-101") == "rollcall/v1/readers/room-101/acks"
    assert topics.status("room-101") == "rollcall/v1/readers/room-101/status"
    assert topics.config("room-101") == "rollcall/v1/readers/room-101/config"


def test_wildcard_and_shared_forms() -> None:
    assert topics.all_readers("taps") == "rollcall/v1/readers/+/taps"
    assert (
        topics.shared(topics.all_readers("taps"))
        == "$share/rollcall-ingest/rollcall/v1/readers/+/taps"
    )


def test_parse_round_trips() -> None:
    assert topics.parse(topics.taps("A_b-9")) == ("A_b-9", "taps")


@pytest.mark.parametrize(
    "bad",
    [
        "rollcall/v1/readers/r1/other",
        "rollcall/v2/readers/r1/taps",
        "rollcall/v1/readers//taps",
        "rollcall/v1/readers/a b/taps",
        "rollcall/v1/readers/" + "x" * 65 + "/taps",
        "taps",
        "",
    ],
)
def test_parse_refuses_foreign_topics(bad: str) -> None:
    with pytest.raises(MalformedMessage):
        topics.parse(bad)


@pytest.mark.parametrize("reader_id", ["", "a/b", "+", "#", "x" * 65, "读卡器"])
def test_invalid_reader_ids_are_refused(reader_id: str) -> None:
    with pytest.raises(MalformedMessage, match="invalid reader_id"):
        topics.taps(reader_id)
