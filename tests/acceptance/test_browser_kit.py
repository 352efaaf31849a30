"""The browser kit every page test uses (tests/browserkit.py + tests/browser/launch.mjs):
playwright-core drives Debian's headless chromium through /docs of a running `kassa serve`,
and nothing the page loads comes from outside kassa."""

from __future__ import annotations

import pytest

from tests.acceptance.conftest import Server
from tests.browserkit import run_script

pytestmark = pytest.mark.acceptance


def test_docs_render_in_a_browser_driven_by_playwright(sqlite_server: Server) -> None:
    output = run_script("docs.mjs", {"KASSA_URL": sqlite_server.base_url})
    assert "docs rendered" in output
