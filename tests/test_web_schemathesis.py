"""Property-based tests of the JSON API from its own OpenAPI spec (schemathesis).

Schemathesis sends requests built from /openapi.json to the app in-process (ASGI)
and asserts that no request, valid or not, gets a 5xx response. Each operation gets
a bounded number of examples so the file runs in about a minute on one CPU core.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip(
    "schemathesis", reason="the web extra is not installed (.[web])"
)

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from abcrnn.web.app import create_app  # noqa: E402
from web_support import RUN_NAME, tiny_runs_dir  # noqa: E402

# Generation requests are capped at this size, so a random case does not spend
# minutes sampling 16 tunes of 5,000 characters. test_web_api.py checks the limits.
MAX_TUNES_TRIED = 2
MAX_LENGTH_TRIED = 200


# The schema is read from the app when this module is imported, before any fixture
# runs, so the app starts with empty folders and the fixture below copies the
# trained run in. (schemathesis.pytest.from_fixture would avoid that, but in
# schemathesis 4.32 it fails under pytest 9 with "no attribute '_nodeid'".)
WORK_DIR = Path(tempfile.mkdtemp(prefix="abcrnn-web-schemathesis-"))
atexit.register(shutil.rmtree, WORK_DIR, ignore_errors=True)
APP = create_app(WORK_DIR / "runs", WORK_DIR / "out")
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def tiny_run_in_app() -> None:
    if not (WORK_DIR / "runs" / RUN_NAME).exists():
        shutil.copytree(tiny_runs_dir() / RUN_NAME, WORK_DIR / "runs" / RUN_NAME)


def aim_at_tiny_run(case) -> None:
    """Point generate requests at the trained run and cap their size.

    Random run names almost never exist, so without this every generate request
    would stop at the 404 and sampling, checking and rendering would go untested.
    """
    body = case.body
    if case.path != "/api/generate" or not isinstance(body, dict):
        return
    if isinstance(body.get("run"), str):
        body["run"] = RUN_NAME
    if isinstance(body.get("num_tunes"), int):
        body["num_tunes"] = min(body["num_tunes"], MAX_TUNES_TRIED)
    if "sampling" not in body:
        body["sampling"] = {"max_length": MAX_LENGTH_TRIED}
    sampling = body.get("sampling")
    if isinstance(sampling, dict) and isinstance(sampling.get("max_length"), int):
        sampling["max_length"] = min(sampling["max_length"], MAX_LENGTH_TRIED)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_never_answers_5xx(case):
    aim_at_tiny_run(case)

    # A slow response on a busy machine is not a fault: allow well over the 10 s
    # default before the request counts as failed.
    case.call_and_validate(checks=[not_a_server_error], timeout=120)


def test_spec_lists_every_route():
    paths = set(schema.raw_schema["paths"])

    assert paths == {
        "/api/runs",
        "/api/runs/{name}",
        "/api/generate",
        "/api/check",
        "/api/render",
        "/api/files/{file_id}/{name}",
    }


def test_tiny_run_served():
    # The cases above only reach the model when the app lists this run.
    with TestClient(APP) as client:
        runs = client.get("/api/runs").json()

    assert [run["name"] for run in runs] == [RUN_NAME]
