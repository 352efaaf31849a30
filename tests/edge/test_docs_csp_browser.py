"""/docs under its Content-Security-Policy in a real headless Chromium (the browser kit:
tests/browser/docs_csp.mjs): Swagger UI renders from kassa alone, the payments operations,
"Try it out" and the Authorize dialog open, and the browser reports no CSP violation — the
listener proven live by one violation provoked on purpose, the only one it may see."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.acceptance.conftest import Server, launch, stop
from tests.browserkit import run_script

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = launch(tmp_path_factory.mktemp("docs-csp"))
    yield server
    stop(server.process)


def test_docs_work_under_the_policy_with_no_violation(docs_server: Server) -> None:
    output = run_script("docs_csp.mjs", {"KASSA_URL": docs_server.base_url}, timeout=240)
    outcome = json.loads(output.strip().splitlines()[-1])
    assert outcome["operations"] >= 15
    assert outcome["opened"] >= 5
    assert outcome["authorize"] is True
