"""The reader's challenge and personalisation exchanges, against a hand-written card."""

import threading
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from protocol import CardAuth, CardTech
from reader_agent.agent import Agent, RunOutcome
from reader_agent.cardauth import (
    CardKeyFile,
    ChallengeResponse,
    Personaliser,
    challenge_for,
    internal_authenticate,
    read_key_dir,
)
from reader_agent.config import load_settings
from reader_agent.errors import ConfigError
from reader_agent.outbox import Outbox
from reader_agent.sources.apdu import Response
from reader_agent.sources.base import CardPresentation, CardSource
from reader_agent.sources.options import PcscOptions
from tests.unit.reader_agent.fakes import FakeTransport, RecordingFeedback, acking_server

KEY = bytes.fromhex("A8DD63A3B89D54B37CA802473FDA9175")
UID = "04A1B2C3D4E5F6"
SELECT = "00A4040003524C43"


class ScriptedCard:
    """A card that answers each command with the next scripted response (hex)."""

    def __init__(self, *answers: str) -> None:
        self.answers = [bytes.fromhex(answer) for answer in answers]
        self.commands: list[bytes] = []

    def __call__(self, apdu: bytes) -> Response:
        self.commands.append(apdu)
        return Response.from_bytes(self.answers.pop(0))


def test_the_challenge_is_the_event_id_and_the_answer_is_forwarded() -> None:
    event_id = uuid4()
    card = ScriptedCard("9000", "00112233445566778899AABBCCDDEEFF9000")
    challenger = ChallengeResponse.from_options(
        PcscOptions(challenge_response=True, auth_keyref=3, auth_apdus=[SELECT])
    )

    auth = challenger(card, CardTech.ISO14443A, UID, event_id)

    assert auth is not None
    assert bytes.fromhex(auth.challenge) == event_id.bytes == challenge_for(event_id)
    assert auth.response == "00112233445566778899AABBCCDDEEFF"
    assert card.commands == [
        bytes.fromhex(SELECT),
        bytes.fromhex("0088000310") + event_id.bytes + b"\x00",
    ]


@pytest.mark.parametrize("answer", ["6A88", "6D00", "9000"])
def test_a_card_without_a_key_gives_no_answer(answer: str) -> None:
    card = ScriptedCard(answer)
    assert ChallengeResponse()(card, CardTech.ISO14443A, UID, uuid4()) is None


def test_internal_authenticate_layout() -> None:
    challenge = bytes(range(16))
    assert internal_authenticate(1, challenge) == bytes.fromhex("0088000110") + challenge + b"\0"


def key_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "card.key"
    path.write_text(body)
    return path


def test_key_file_round_trip(tmp_path: Path) -> None:
    path = key_file(
        tmp_path,
        f'uid = "{UID.lower()}"\ntech = "iso14443a"\nkey_version = 2\nkey = "{KEY.hex()}"\n',
    )
    read = CardKeyFile.read(path)
    assert (read.uid, read.key, read.key_version, read.tech) == (UID, KEY, 2, "iso14443a")
    assert KEY.hex() not in repr(read).lower()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('uid = "04"\n', "lacks"),
        ('uid = "04"\nkey_version = 1\nkey = "zz"\n', "not hex"),
        ('uid = "04"\nkey_version = 1\nkey = "0011"\n', "16 bytes"),
        ("not toml at all = = =", "not what"),
    ],
)
def test_bad_key_files_are_refused(tmp_path: Path, body: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        CardKeyFile.read(key_file(tmp_path, body))


def test_personaliser_writes_the_key_to_its_card_only() -> None:
    personaliser = Personaliser.from_options(
        [CardKeyFile(UID, KEY, 1)], PcscOptions(auth_keyref=2, key_write_header="80DA01")
    )
    other = ScriptedCard()
    personaliser(other, CardTech.ISO14443A, "04000000", uuid4())
    assert other.commands == []
    assert personaliser.written_uid is None
    assert personaliser.refusal is not None

    card = ScriptedCard("9000")
    personaliser(card, CardTech.ISO14443A, UID, uuid4())
    assert card.commands == [bytes.fromhex("80DA010210") + KEY]
    assert (personaliser.written_uid, personaliser.refusal) == (UID, None)


def test_a_refused_key_write_does_not_quote_the_key() -> None:
    personaliser = Personaliser({UID: CardKeyFile(UID, KEY, 1)}, bytes.fromhex("80D800"))
    personaliser(ScriptedCard("6982"), CardTech.ISO14443A, UID, uuid4())
    assert personaliser.written_uid is None
    assert personaliser.refusal is not None
    assert "6982" in personaliser.refusal
    assert KEY.hex().upper() not in personaliser.refusal.upper()


OTHER_UID = "04000000000001"
OTHER_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")


def test_a_personaliser_of_several_cards_writes_each_its_own_key() -> None:
    personaliser = Personaliser.from_options(
        [CardKeyFile(UID, KEY, 2), CardKeyFile(OTHER_UID, OTHER_KEY, 2)], PcscOptions()
    )
    first, second, stranger = ScriptedCard("9000"), ScriptedCard("9000"), ScriptedCard()

    personaliser(second, CardTech.ISO14443A, OTHER_UID, uuid4())
    assert second.commands == [bytes.fromhex("80D8000010") + OTHER_KEY]
    assert personaliser.written_uid == OTHER_UID

    personaliser(stranger, CardTech.ISO14443A, "04FFFFFF", uuid4())
    assert stranger.commands == []
    # What happened to the card before is not left to look like this one's.
    assert personaliser.written is None
    assert personaliser.refusal == "card 04FFFFFF is on the reader, but no key file is for it"

    personaliser(first, CardTech.ISO14443A, UID, uuid4())
    assert first.commands == [bytes.fromhex("80D8000010") + KEY]
    assert (personaliser.written_uid, personaliser.refusal) == (UID, None)


def test_two_key_files_for_one_card_are_refused() -> None:
    with pytest.raises(ConfigError, match=f"two key files are for card {UID}"):
        Personaliser.from_options(
            [CardKeyFile(UID, KEY, 1), CardKeyFile(UID, KEY, 2)], PcscOptions()
        )


def test_a_key_directory_reads_every_key_file_and_each_is_erased_once_used(
    tmp_path: Path,
) -> None:
    for uid, key in ((UID, KEY), (OTHER_UID, OTHER_KEY)):
        (tmp_path / f"iso14443a-{uid}.key").write_text(
            f'uid = "{uid}"\ntech = "iso14443a"\nkey_version = 2\nkey = "{key.hex()}"\n'
        )
    (tmp_path / "README.txt").write_text("not a key file")

    read = read_key_dir(tmp_path)

    assert [(k.uid, k.key, k.key_version) for k in read] == [
        (OTHER_UID, OTHER_KEY, 2),
        (UID, KEY, 2),
    ]
    path = tmp_path / f"iso14443a-{UID}.key"
    held = path.open("rb")  # what a copy made before the erase would still see
    read[1].erase()
    assert not path.exists()
    assert set(held.read()) == {0}  # overwritten, not just unlinked
    held.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README.txt",
        f"iso14443a-{OTHER_UID}.key",
    ]


def test_a_key_directory_without_key_files_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"holds no \.key files"):
        read_key_dir(tmp_path)
    with pytest.raises(ConfigError, match="not a directory"):
        read_key_dir(tmp_path / "missing")


def test_options_check_the_challenge_settings() -> None:
    with pytest.raises(ValueError, match="auth_apdus"):
        PcscOptions(auth_apdus=["00A4"])
    with pytest.raises(ValueError, match="key_write_header"):
        PcscOptions(key_write_header="80D8")
    with pytest.raises(ValueError, match="auth_keyref"):
        PcscOptions(auth_keyref=256)


class AnsweringSource(CardSource):
    """One presentation whose card answered a challenge made of a chosen event id."""

    name = "answering"

    def __init__(self, presentation: CardPresentation) -> None:
        self.presentation = presentation

    def presentations(self, stop: threading.Event) -> Iterator[CardPresentation]:
        yield self.presentation


def test_the_agent_uses_the_event_id_the_challenge_was_made_of(tmp_path: Path) -> None:
    event_id = uuid4()
    auth = CardAuth(challenge=event_id.bytes.hex(), response=KEY.hex())
    presentation = CardPresentation(
        tech=CardTech.ISO14443A, uid=UID, source="answering", auth=auth, event_id=event_id
    )
    transport = FakeTransport(responder=acking_server())
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    try:
        agent = Agent(
            load_settings(None, id="door-1", clock_synced=True),
            AnsweringSource(presentation),
            RecordingFeedback(),
            outbox=outbox,
            transport=transport,
        )
        assert agent.run(threading.Event(), exit_when_drained=True, drain_timeout=5) is (
            RunOutcome.DRAINED
        )
    finally:
        outbox.close()
    [tap] = transport.taps()
    assert tap.event_id == event_id
    assert tap.card.auth == auth
