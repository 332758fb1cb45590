"""schemathesis against the collector's own OpenAPI document (issue 8, "Bad input"): a real
collector on 127.0.0.1 (SQLite, provisioned with a kiosk, inspectors and an admin), every
operation called with cases generated from the document, positive and negative, with the token
of the operation's own role and with a token of another role. No answer is a 5xx, and every
answer matches the document: status code listed, content type, headers and body schema.

`make test` runs 5 positive and 5 negative cases per operation; `make soak` (KIOSK_SOAK=1, -m slow)
300 of each.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_fuzz_support import SOAK, LiveCollector, record_figures

from kiosk.collector.app import build_app
from kiosk.collector.config import CollectorConfig
from kiosk.collector.keys import OPERATIONS_KEY
from kiosk.collector.openapi import build_document

EXAMPLES = int(os.environ.get("KIOSK_SCHEMATHESIS_EXAMPLES", 5))
SOAK_EXAMPLES = int(os.environ.get("KIOSK_SCHEMATHESIS_SOAK_EXAMPLES", 300))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
OWN = {"kiosk": "k-a", "inspector": "insp-city", "admin": "root"}
OTHER = {"kiosk": "insp-d1", "inspector": "root", "admin": "k-a"}
CALLS: dict[str, int] = {}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCollector]:
    folder: Path = tmp_path_factory.mktemp("schemathesis")
    config = CollectorConfig.model_validate({
        "database": {"url": f"sqlite:///{folder}/collector.db"},
        "limits": {"auth_failure_burst": 0},  # schemathesis sends many bad tokens on purpose
    })
    with LiveCollector(config) as server:
        yield server
    record_figures("schemathesis", {"calls": sum(CALLS.values()), "operations": len(CALLS)},
                   run="soak" if SOAK else "short")


def documented_operations() -> list[tuple[str, str]]:
    """(method, path) of every operation the document lists, known without a server."""
    app = build_app(CollectorConfig())
    document = build_document(app[OPERATIONS_KEY])
    return [(method.upper(), path) for path, item in document["paths"].items()
            for method in item]


@pytest.fixture(scope="module")
def api_schema(live: LiveCollector) -> Any:
    return schemathesis.openapi.from_url(f"{live.url}/api/v1/openapi.json")


def exercise(
    api_schema: Any, live: LiveCollector, method: str, path: str, examples: int
) -> None:
    """`examples` positive and as many negative cases of one operation, each sent with a token
    of the operation's role and with one of another role, every answer validated."""
    operation = api_schema[path][method]
    roles = operation.definition.raw.get("x-roles", [])
    key = f"{method} {path}"
    calls_before = CALLS.get(key, 0)

    def call(case: Any) -> None:
        for names in (OWN, OTHER) if roles else ({},):
            headers = live.auth(names[roles[0]]) if roles else {}
            CALLS[key] = CALLS.get(key, 0) + 1
            case.call_and_validate(base_url=live.url, headers=headers, checks=CHECKS)

    raw = operation.definition.raw
    # Without parameters or a body there is nothing to make invalid.
    negative = bool(raw.get("parameters") or raw.get("requestBody"))
    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if negative else [])
    for mode in modes:
        run = settings(max_examples=examples, deadline=None, database=None,
                       suppress_health_check=list(HealthCheck))(
            given(operation.as_strategy(generation_mode=mode))(call)
        )
        run()
    assert CALLS.get(key, 0) > calls_before


@pytest.mark.parametrize(("method", "path"), documented_operations())
def test_every_answer_matches_the_document_and_none_is_a_5xx(
    api_schema: Any, live: LiveCollector, method: str, path: str
) -> None:
    exercise(api_schema, live, method, path, EXAMPLES)


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="the long run is for make soak (KIOSK_SOAK=1)")
@pytest.mark.parametrize(("method", "path"), documented_operations())
def test_many_cases_per_operation_match_the_document(
    api_schema: Any, live: LiveCollector, method: str, path: str
) -> None:
    exercise(api_schema, live, method, path, SOAK_EXAMPLES)
