"""Property-based conformance of the running API to its own OpenAPI schema (schemathesis 4)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

KEY = "schema-key"


@pytest.fixture(scope="module")
def keyed_url(model_dir: Path) -> Iterator[str]:
    """A server that requires an API key (so the schema's security scheme is real)."""
    from server import running_server

    from evbattery.api.app import create_app
    from evbattery.api.config import ApiSettings

    app = create_app(ApiSettings(model_dir=model_dir, api_key=KEY, max_upload_mb=0.25, max_pixels=250_000))
    with running_server(app) as base:
        yield base


def test_api_conforms_to_schema(keyed_url: str) -> None:
    """Every operation, a bounded number of generated cases each, all default checks but one."""
    # schemathesis.pytest.from_fixture does not work with pytest 9 (no Function._nodeid), so the
    # operations are driven with Hypothesis directly.
    schema = schemathesis.openapi.from_url(f"{keyed_url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 10
    calls: list[int] = []
    for op in operations:

        @given(case=op.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            # Random bytes are schema-valid "binary" files but not images: the API rightly answers 400,
            # which positive_data_acceptance would count against it. Every other default check runs.
            response = case.call_and_validate(headers={"X-API-Key": KEY},
                                              excluded_checks=[positive_data_acceptance])
            calls.append(response.status_code)

        check()
    assert len(calls) >= 3 * len(operations) and max(calls) < 500
