"""A form posted to kassa's pages too often is refused with a page a person reads, in a real
browser (headless chromium driven by playwright-core) against `kassa serve`: a customer
trying cards on the checkout page is told that nothing was charged and how long to wait, and
is led back to the payment page."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.acceptance.conftest import launch, stop
from tests.acceptance.test_checkout_browser import merchant, open_session, serve_shop
from tests.browserkit import run_script

pytestmark = pytest.mark.acceptance


def test_a_customer_over_the_limit_reads_a_page_and_finds_the_way_back(tmp_path: Path) -> None:
    # register, log in and open the session: 3 of the 10; then forms until one is refused.
    server = launch(tmp_path, rate_limit="10/minute")
    try:
        with serve_shop() as shop:
            session = open_session(server, merchant(server), shop)
        picture = Path(os.environ.get("KASSA_SCREENSHOTS", tmp_path)) / "too_many.png"
        output = run_script(
            "too_many.mjs", {"PAY_URL": session["url"], "TRIES": "12", "SCREENSHOT": str(picture)}
        )
    finally:
        stop(server.process)
    assert "refused at attempt 8" in output  # forms 4–10 were counted and answered
    assert f"back: {session['url']}" in output
    assert picture.stat().st_size > 0
