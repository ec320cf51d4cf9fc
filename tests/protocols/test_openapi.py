"""The served OpenAPI description, and a bounded property-based fuzz of the live service against it."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from helpers import dsm_only, running_app, served


@pytest.fixture(scope="module")
def live_url(tiny_env):
    # Short texts and short audio keep each fuzzed request fast on the tiny model.
    with running_app(dsm_only(tiny_env), max_chars=120, max_audio_seconds=2.0, rate_limit="",
                     request_timeout=60.0) as app, served(app) as base:
        yield base


def test_spec_describes_every_route(live_url):
    import requests

    spec = requests.get(f"{live_url}/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.1")
    for path in ("/health", "/tts", "/tts/stream", "/metrics", "/openapi.json"):
        assert path in spec["paths"]


def test_live_service_honours_its_description(live_url):
    """No 500s, and every answer matches the documented status codes, types and schemas."""
    api_schema = schemathesis.openapi.from_url(f"{live_url}/openapi.json")
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 4
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(timeout=60)
            case.validate_response(response)

        check()
