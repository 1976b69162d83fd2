"""The load generator's MQTT 3.1.1 packet codec (bench.wire), no sockets."""

import struct

import pytest

from bench import wire

VARINTS = [
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"),
    (2_097_152, b"\x80\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f"),
]


@pytest.mark.parametrize(("value", "encoded"), VARINTS)
def test_varint_round_trip_at_the_edges(value: int, encoded: bytes) -> None:
    assert wire.encode_varint(value) == encoded
    assert wire.decode_varint(encoded) == (value, len(encoded))
    # At an offset, with bytes after it.
    assert wire.decode_varint(b"\x30" + encoded + b"rest", 1) == (value, 1 + len(encoded))


@pytest.mark.parametrize(("value", "encoded"), VARINTS)
def test_varint_cut_short_is_incomplete(value: int, encoded: bytes) -> None:
    for cut in range(len(encoded)):
        assert wire.decode_varint(encoded[:cut]) is None


def test_varint_out_of_range_and_malformed() -> None:
    with pytest.raises(ValueError, match="out of range"):
        wire.encode_varint(268_435_456)
    with pytest.raises(ValueError, match="out of range"):
        wire.encode_varint(-1)
    with pytest.raises(wire.ProtocolError, match="more than four bytes"):
        wire.decode_varint(b"\x80\x80\x80\x80\x01")


def test_connect_packet() -> None:
    packet = wire.connect_packet("bench-gen-1", 60)
    body = b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x0bbench-gen-1"
    assert packet == b"\x10" + bytes((len(body),)) + body
    assert wire.connect_packet("c", 0, clean_session=False)[9] == 0x00


def test_subscribe_packet() -> None:
    packet = wire.subscribe_packet(7, "a/b", 1)
    assert packet == b"\x82\x08\x00\x07\x00\x03a/b\x01"


def test_publish_qos1_round_trip() -> None:
    payload = b'{"event_id": "x"}' * 20  # remaining length > 127: a two-byte varint
    packet = wire.publish_packet("rollcall/v1/readers/r1/taps", payload, qos=1, packet_id=513)
    assert packet[0] == 0x32
    [(kind, flags, body)] = wire.PacketReader().feed(packet)
    assert (kind, flags) == (wire.PUBLISH, 0x02)
    message = wire.parse_publish(flags, body)
    assert message == wire.Publish(
        "rollcall/v1/readers/r1/taps", payload, qos=1, packet_id=513, dup=False, retain=False
    )


def test_publish_qos0_has_no_packet_id_and_flags_round_trip() -> None:
    packet = wire.publish_packet(b"t", b"hi", dup=True, retain=True)
    assert packet == b"\x39\x05\x00\x01thi"
    [(_, flags, body)] = wire.PacketReader().feed(packet)
    assert wire.parse_publish(flags, body) == wire.Publish("t", b"hi", 0, 0, True, True)


def test_publish_qos1_needs_a_packet_id() -> None:
    for bad in (0, 65_536):
        with pytest.raises(ValueError, match="packet id"):
            wire.publish_packet("t", b"", qos=1, packet_id=bad)


def test_puback_round_trip() -> None:
    assert wire.puback_packet(65_535) == b"\x40\x02\xff\xff"
    [(kind, _, body)] = wire.PacketReader().feed(wire.puback_packet(258))
    assert kind == wire.PUBACK
    assert wire.parse_puback(body) == 258
    with pytest.raises(wire.ProtocolError):
        wire.parse_puback(b"\x01")


def test_suback_and_connack() -> None:
    [(kind, _, body)] = wire.PacketReader().feed(b"\x90\x04\x00\x09\x01\x80")
    assert kind == wire.SUBACK
    assert wire.parse_suback(body) == (9, [1, wire.SUBACK_FAILURE])
    [(kind, _, body)] = wire.PacketReader().feed(b"\x20\x02\x00\x05")
    assert kind == wire.CONNACK
    assert wire.parse_connack(body) == (False, 5)


def test_reader_reassembles_packets_split_across_reads() -> None:
    big = wire.publish_packet("acks", b"p" * 20_000, qos=1, packet_id=1)  # 3-byte varint
    stream = (
        wire.puback_packet(1)
        + big
        + b"\xd0\x00"  # PINGRESP: an empty body
        + wire.publish_packet("acks", b"{}", qos=0)
        + b"\x90\x03\x00\x02\x01"
    )
    for size in (1, 2, 3, 7, 4096):
        reader = wire.PacketReader()
        packets = []
        for start in range(0, len(stream), size):
            packets += reader.feed(stream[start : start + size])
        assert reader.pending == 0
        assert [kind for kind, _, _ in packets] == [
            wire.PUBACK,
            wire.PUBLISH,
            wire.PINGRESP,
            wire.PUBLISH,
            wire.SUBACK,
        ]
        assert wire.parse_publish(packets[1][1], packets[1][2]).payload == b"p" * 20_000
        assert packets[2][2] == b""


def test_reader_holds_an_incomplete_packet() -> None:
    reader = wire.PacketReader()
    packet = wire.publish_packet("t", b"abc", qos=1, packet_id=3)
    assert reader.feed(packet[:-1]) == []
    assert reader.pending == len(packet) - 1
    [(_, flags, body)] = reader.feed(packet[-1:] + packet[:1])
    assert wire.parse_publish(flags, body).payload == b"abc"
    assert reader.pending == 1


def test_packet_ids_wrap_and_skip_those_in_flight() -> None:
    ids = wire.PacketIds(start=65_534)
    assert ids.take("a") == 65_534
    assert ids.take("b") == 65_535
    assert ids.take("c") == 1  # wraps, never 0
    assert ids.release(65_535) == "b"
    # 65,534 is still in flight: the next turn round skips it.
    ids = wire.PacketIds(start=65_534)
    assert ids.take("old") == 65_534
    ids._next = 65_534
    assert ids.take("new") == 65_535
    assert ids.in_flight == {65_534: "old", 65_535: "new"}


def test_packet_ids_run_out_only_when_all_are_in_flight() -> None:
    ids = wire.PacketIds()
    taken = {ids.take(n) for n in range(wire.MAX_PACKET_ID)}
    assert taken == set(range(1, 65_536))
    assert ids.take("one too many") is None
    ids.release(40_000)
    assert ids.take("again") == 40_000
    with pytest.raises(KeyError):
        ids.release(0)


def test_publish_header_layout() -> None:
    packet = wire.publish_packet("ab", b"xyz", qos=1, packet_id=0x0102)
    assert packet == b"\x32\x09" + struct.pack("!H", 2) + b"ab\x01\x02xyz"
