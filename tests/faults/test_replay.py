"""Every tap message arrives three times: twice interleaved with other taps, once after its ack.

The server must answer each copy, credit the tap once and answer the repeats
`duplicate` — whichever copy it happens to see first.
"""

import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from protocol import Ack, AckResult, CardId, CardTech, Tap, encode, topics
from tests.faults import fleet
from tests.faults.wire import RawReader
from tests.support.mosquitto import Mosquitto
from tests.support.roster import seed_roster

pytestmark = [pytest.mark.integration]

POINTS = 3
MEMBERS = 60
READER_ID = "replay-1"


def test_each_tap_sent_three_times_is_credited_once(
    database_url: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    fleet.upgrade(database_url)
    roster = seed_roster(database_url, members=MEMBERS, reader_ids=(READER_ID,), points=POINTS)
    boot = uuid.uuid4()
    payloads = [
        encode(
            Tap(
                event_id=uuid.uuid4(),
                reader_id=READER_ID,
                boot_id=boot,
                seq=i + 1,
                card=CardId(tech=CardTech.ISO14443A, uid=uid),
                occurred_at=datetime.now(UTC),
                clock_synced=True,
            )
        )
        for i, uid in enumerate(roster.uids)
    ]
    taps_topic, acks_topic = topics.taps(READER_ID), topics.acks(READER_ID)
    with fleet.ingest(tmp_path, database_url, mosquitto.url):
        wire = RawReader(mosquitto.host, mosquitto.port)
        try:
            wire.subscribe(acks_topic)
            # Copies one and two interleaved: tap i, then tap i-1 again, back to back.
            for i, payload in enumerate(payloads):
                wire.publish(taps_topic, payload, wait=False)
                if i:
                    wire.publish(taps_topic, payloads[i - 1], wait=False)
            wire.publish(taps_topic, payloads[-1])
            wire.wait_until(lambda: len(wire.on(acks_topic)) >= 2 * MEMBERS)
            # Copy three, after every tap has been answered.
            for payload in payloads:
                wire.publish(taps_topic, payload, wait=False)
            wire.wait_until(lambda: len(wire.on(acks_topic)) >= 3 * MEMBERS)
            acks = wire.acks(acks_topic)
        finally:
            wire.close()

    by_event: defaultdict[uuid.UUID, list[Ack]] = defaultdict(list)
    for ack in acks:
        by_event[ack.event_id].append(ack)
    assert len(acks) == 3 * MEMBERS
    assert len(by_event) == MEMBERS
    for event_id, answers in by_event.items():
        results = Counter(a.result for a in answers)
        assert results == {AckResult.ACCEPTED: 1, AckResult.DUPLICATE: 2}, (event_id, answers)
        # A repeat is answered with the original outcome's points, not credited again.
        assert {a.points for a in answers} == {POINTS}

    db = fleet.stored(database_url)
    assert len(db.taps) == MEMBERS
    assert Counter(t["result"] for t in db.taps) == {"accepted": MEMBERS}
    assert len(db.attendance) == MEMBERS
    assert len(db.ledger) == MEMBERS
    assert sum(e["amount"] for e in db.ledger) == MEMBERS * POINTS
