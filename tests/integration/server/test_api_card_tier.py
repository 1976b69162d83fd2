"""The strong card tier over HTTP: requiring it per room and activity type, the clone inbox."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from server.api.app import create_app
from server.db.models import ActivityType, AuditEntry, Room
from server.sample import MinimalSeed, TapBuilder, seed_minimal
from server.services.taps import record_taps
from server.services.unit_of_work import UnitOfWork
from server.settings import load_settings
from tests.support.console import grant_api_token
from tests.support.served import ApiClient, served

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[ApiClient]:
    settings = load_settings(database_url=database_url, data_dir=tmp_path)
    app = create_app(settings)
    with served(app) as http:
        http.runtime = app.state.runtime
        grant_api_token(http, http.runtime.database)
        yield http


@pytest.fixture
def seed(client: ApiClient) -> MinimalSeed:
    return seed_minimal(client.runtime.database.write_sessions, NOW)


def codes(client: ApiClient, seed: MinimalSeed) -> tuple[str, str]:
    with client.runtime.database.sessions() as db:
        room = db.scalar(select(Room.code).where(Room.id == seed.room_id))
        kind = db.scalar(select(ActivityType.code).where(ActivityType.id == seed.activity_type_id))
    assert room is not None
    assert kind is not None
    return room, kind


def test_require_the_tier_and_see_the_clone_it_refuses(
    client: ApiClient, seed: MinimalSeed
) -> None:
    room, kind = codes(client, seed)
    assert client.get("/api/v1/strong-tier").json() == {"rooms": [], "activity_types": []}

    response = client.put(f"/api/v1/rooms/{room}/strong-tier", json={"required": True})
    assert response.status_code == 200
    assert response.json() == {"rooms": [room], "activity_types": []}
    response = client.put(f"/api/v1/activity-types/{kind}/strong-tier", json={"required": True})
    assert response.json() == {"rooms": [room], "activity_types": [kind]}

    database = client.runtime.database
    [outcome] = record_taps(
        UnitOfWork(database.write_sessions), [TapBuilder.for_seed(seed).received()]
    )
    assert outcome.result.value == "rejected"
    [clone] = client.get("/api/v1/cards/suspected-clones").json()
    assert (clone["uid"], clone["tap_count"], clone["resolved"]) == (seed.card_uid, 1, False)
    assert clone["last_reason"].startswith("suspected clone")

    response = client.put(f"/api/v1/rooms/{room}/strong-tier", json={"required": False})
    assert response.json() == {"rooms": [], "activity_types": [kind]}
    with database.sessions() as db:
        actions = list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions[-3:] == ["room.strong_tier", "activity_type.strong_tier", "room.strong_tier"]


def test_an_unknown_room_is_404_and_changes_nothing(client: ApiClient, seed: MinimalSeed) -> None:
    del seed
    response = client.put("/api/v1/rooms/NOPE/strong-tier", json={"required": True})
    assert response.status_code == 404
    assert client.get("/api/v1/strong-tier").json() == {"rooms": [], "activity_types": []}
