"""Browser tests' Python side: run a Node script under tests/browser/ (playwright-core driving
Debian's headless chromium, see tests/browser/launch.mjs) and fail with its output."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI

BROWSER_DIR = Path(__file__).parent / "browser"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


def require_browser() -> None:
    """Skip (fail in CI) when chromium, node or playwright-core are missing."""
    missing = [
        what
        for what, present in (
            ("chromium (apt-get install chromium)", CHROMIUM.exists()),
            ("node", shutil.which("node") is not None),
            (
                "playwright-core (make browser-tools)",
                (BROWSER_DIR / "node_modules" / "playwright-core").is_dir(),
            ),
        )
        if not present
    ]
    if not missing:
        return
    message = "browser tests need " + ", ".join(missing)
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def run_script(script: str, env: dict[str, str], timeout: float = 120) -> str:
    """Run tests/browser/`script` with `env` added; its stdout, or a failure with its output."""
    require_browser()
    completed = subprocess.run(
        ["node", str(BROWSER_DIR / script)],
        cwd=BROWSER_DIR,
        env={**os.environ, "CHROMIUM": str(CHROMIUM), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        pytest.fail(
            f"{script} exited {completed.returncode}\n{completed.stdout}\n{completed.stderr}",
            pytrace=False,
        )
    return completed.stdout
