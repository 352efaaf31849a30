"""/docs rendered by a real headless browser against `kassa serve`: Swagger UI must load from
the service alone (no CDN) and render the operations. Also writes the README screenshot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.acceptance.conftest import Server
from tests.conftest import IN_CI

pytestmark = pytest.mark.acceptance

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_TIMEOUT_SECONDS = 90


@pytest.fixture(scope="module")
def chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    found = shutil.which("chromium")
    if found:
        return Path(found)
    if IN_CI:
        pytest.fail("chromium is required in CI for the /docs browser test", pytrace=False)
    pytest.skip("chromium is not installed")


def run_chromium(chromium: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(chromium),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.fixture(scope="module")
def rendered_dom(
    chromium: Path, sqlite_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> str:
    profile = tmp_path_factory.mktemp("chromium-profile")
    result = run_chromium(chromium, profile, "--dump-dom", f"{sqlite_server.base_url}/docs")
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_docs_render_the_payment_operations_in_a_browser(rendered_dom: str) -> None:
    assert "/api/payments/process" in rendered_dom
    assert "/api/payments/{payment_id}/refund" in rendered_dom
    assert "/api/transactions" in rendered_dom


def test_docs_render_the_authorize_button_in_a_browser(rendered_dom: str) -> None:
    assert "Authorize" in rendered_dom


def test_docs_render_without_a_load_error(rendered_dom: str) -> None:
    assert "Failed to load API definition" not in rendered_dom
    assert 'class="swagger-ui' in rendered_dom


def test_docs_screenshot_is_written(chromium: Path, sqlite_server: Server, tmp_path: Path) -> None:
    # `make screenshots` writes the README's copy; the test keeps the work tree clean.
    shot = tmp_path / "docs.png"
    result = run_chromium(
        chromium,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1280,1600",
        "--hide-scrollbars",
        f"{sqlite_server.base_url}/docs",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000
