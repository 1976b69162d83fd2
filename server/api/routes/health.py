"""GET /healthz: is the database reachable and ingest connected?"""

from fastapi import APIRouter

from server.api.deps import RuntimeDep
from server.api.errors import UNHEALTHY
from server.api.schemas import (
    BrokerHealthOut,
    DatabaseHealthOut,
    HealthOut,
    IngestHealthOut,
)
from server.errors import Unhealthy

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, responses=UNHEALTHY)
def healthz(runtime: RuntimeDep) -> HealthOut:
    """Report each part's health; answer 503 when the database or ingest is down."""
    health = runtime.health()
    report = HealthOut(
        status="ok" if health.ok else "unavailable",
        database=DatabaseHealthOut(ok=health.database_ok, url=health.database_url),
        ingest=IngestHealthOut(
            running=health.ingest_connected is not None,
            connected=bool(health.ingest_connected),
            queued=health.ingest_queued,
            counters=health.ingest_counters,
        ),
        broker=BrokerHealthOut(kind=health.broker_kind, url=health.broker_url),
    )
    if not health.ok:
        raise Unhealthy(report.model_dump(mode="json"))
    return report
