"""Schemathesis against the app's own OpenAPI schema: no operation answers with a 5xx.

The server runs over SQLite seeded with the demo organisation, so generated
requests meet real org units, members, sessions and rooms as well as nonsense.
Every operation gets a bounded number of schema-valid requests and a few
schema-breaking ones; all 5xx answers are collected and reported together.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

from server.api.app import create_app
from server.domain.clock import FixedClock
from server.runtime import ServerRuntime
from server.sample import seed_demo
from server.settings import load_settings
from tests.support.console import grant_api_token
from tests.support.served import ApiClient, served

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
# Examples per operation: schema-valid ones find logic errors, invalid ones parsing errors.
EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 3}


@pytest.fixture(scope="module")
def auth_headers(api: ApiClient) -> dict[str, str]:
    """Headers every fuzzed request carries: a super admin's bearer token."""
    return {"Authorization": f"Bearer {grant_api_token(api, api.runtime.database)}"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiClient]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    settings_ = load_settings(
        database_url=f"sqlite:///{data_dir / 'rollcall.db'}",
        data_dir=data_dir,
        mqtt_url="mqtt://127.0.0.1:1",  # unreachable: no broker, no ingest, no scheduler
    )
    runtime = ServerRuntime(settings_, clock=FixedClock(NOW), ingest=False, scheduler=False)
    runtime.start()
    try:
        seed_demo(runtime.database.write_sessions, NOW, settings_.zone, members=60)
        with served(create_app(settings_, runtime=runtime)) as client:
            client.runtime = runtime
            yield client
    finally:
        runtime.stop()


def _server_errors(
    operation: Any, mode: GenerationMode, base_url: str, headers: dict[str, str]
) -> list[str]:
    """Fuzz one operation; the 5xx answers it gave, one line each."""
    found: list[str] = []
    http = requests.Session()

    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        derandomize=True,  # the same requests every run: a failure reproduces
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, session=http, headers=headers)
        try:
            case.validate_response(response, checks=[not_a_server_error], headers=headers)
        except (FailureGroup, AssertionError):
            found.append(
                f"{operation.label} ({mode.value}) -> {response.status_code}: "
                f"{case.path_parameters} {case.query} {case.body!r}"[:400]
            )

    try:
        run()
    except Unsatisfiable:
        # Nothing to break: an operation without parameters or body has no invalid request.
        assert mode is GenerationMode.NEGATIVE, operation.label
    finally:
        http.close()
    return found


def test_no_operation_answers_with_a_server_error(
    api: ApiClient, auth_headers: dict[str, str]
) -> None:
    schema = schemathesis.openapi.from_dict(api.get("/openapi.json").json())
    base_url = str(api.base_url).rstrip("/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30

    errors: list[str] = []
    for operation in operations:
        for mode in EXAMPLES:
            errors += _server_errors(operation, mode, base_url, auth_headers)

    assert errors == [], "\n".join(errors)
