"""GET /openapi.json describes every route, and the running local runtime keeps to it: schemathesis
sends generated requests, valid and invalid, to every operation and checks that no answer is a
server error and none breaks the description (status codes, content types, bodies, headers), and
sends every path the methods it does not list (TRACE among them), which must be 405 with Allow.
Bounded examples keep it to CI time."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.meta import CoverageScenario
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.system.conftest import Runtime, running_runtime

pytestmark = pytest.mark.system
EXAMPLES = 12  # per operation and mode: about 30 operations, well under a minute in all
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with running_runtime(tmp_path_factory.mktemp("openapi")) as rt:
        yield rt


def test_every_route_of_the_app_is_described(runtime: Runtime) -> None:
    from app import app

    document = runtime.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    routes = {(path.replace("{task_id}", "{taskId}").replace("{job_id}", "{jobId}")
               .replace("{execution_id}", "{executionId}"), method.lower())
              for path, methods in app.routes.items() for method in methods}
    assert routes == described
    for item in document["paths"].values():
        for operation in item.values():
            assert {"200", "400", "404", "503"} <= set(operation["responses"]) or not operation["parameters"]


def _fuzz(operation, mode: GenerationMode, failures: list[str]) -> None:  # noqa: ANN001 - schemathesis's type
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:  # noqa: ANN001
        if isinstance(case.body, dict) and isinstance(case.body.get("command"), str):
            # Jobs run as processes on this machine: generated commands are replaced by a harmless
            # one (the command rules have their own tests).
            case.body["command"] = "true"
        try:
            case.call_and_validate(checks=CHECKS)
        except AssertionError as failure:  # schemathesis's failures are AssertionErrors
            failures.append(f"{operation.label} ({mode.value}): {str(failure)[:1500]}")

    try:
        run()
    except Unsatisfiable:
        # an operation with no parameters and no body: nothing can be made invalid
        assert mode is GenerationMode.NEGATIVE and not operation.path_parameters and not operation.query, operation.label


def test_the_service_keeps_to_its_description(runtime: Runtime) -> None:
    """Every operation, valid and invalid requests. (schemathesis's pytest loader, from_fixture,
    does not run under pytest 9, so the operations are driven through hypothesis here.)"""
    schema = schemathesis.openapi.from_url(f"{runtime.url}/openapi.json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    described = {f"{method.upper()} {path}" for path, item in runtime.get("/openapi.json").json()["paths"].items()
                 for method in item}
    assert described - {operation.label for operation in operations} <= {"GET /openapi.json"}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, failures)
    assert not failures, "\n\n".join(failures)


def test_methods_the_description_does_not_list_are_405_with_allow(runtime: Runtime) -> None:
    """schemathesis's coverage phase sends each path the methods its description does not list
    (GET, PUT, POST, DELETE, OPTIONS, PATCH, TRACE, QUERY, less the listed ones): none may be a
    server error, and each is 405 with the Allow header HTTP requires."""
    schema = schemathesis.openapi.from_url(f"{runtime.url}/openapi.json")
    failures: list[str] = []
    sent: set[str] = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        config = schema.config.generation_for(operation=operation, phase="coverage")
        for case in schema.iter_coverage_cases(operation, generation_modes=[GenerationMode.NEGATIVE],
                                               generation_config=config):
            if case.meta is None or getattr(case.meta.phase.data, "scenario", None) != CoverageScenario.UNSPECIFIED_HTTP_METHOD:
                continue
            sent.add(case.method)
            try:
                response = case.call_and_validate(checks=[not_a_server_error, unsupported_method])
            except AssertionError as failure:
                failures.append(f"{case.method} {operation.path}: {str(failure)[:500]}")
                continue
            content_type = response.headers.get("content-type")  # schemathesis keeps each header's values
            if content_type != ["application/json"]:
                failures.append(f"{case.method} {operation.path}: answered {response.status_code} {content_type}")
    assert {"TRACE", "QUERY", "DELETE", "PATCH"} <= sent
    assert not failures, "\n\n".join(failures)
