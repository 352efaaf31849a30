"""The TypeScript client (clients/typescript) walks a payment's life against `kassa serve`:
its test, clients/typescript/test/walk.test.ts, is type-checked and compiled with the
package's TypeScript, then run by the machine's Node.js test runner (`node --test`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.acceptance.conftest import Server
from tests.clients.conftest import ROOT

pytestmark = pytest.mark.acceptance

PACKAGE = ROOT / "clients" / "typescript"
TSC = PACKAGE / "node_modules" / ".bin" / "tsc"


def test_the_typescript_client_walks_a_payments_life(live: Server, tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is not installed"
    assert TSC.exists(), "clients/typescript/node_modules is missing: run `make client-tools`"
    out = tmp_path / "dist"
    compiled = subprocess.run(
        [str(TSC), "-p", str(PACKAGE), "--outDir", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    # The compiled test imports standardwebhooks and openapi-fetch: node resolves them from
    # the package's node_modules, found by walking up from the compiled files.
    (out / "node_modules").symlink_to(PACKAGE / "node_modules")
    (out / "package.json").write_text('{"type": "module"}', encoding="utf-8")
    walked = subprocess.run(
        [node, "--test", "--test-reporter=spec", str(out / "test" / "walk.test.js")],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "KASSA_BASE_URL": live.base_url,
            "NO_COLOR": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert walked.returncode == 0, walked.stdout + walked.stderr
    # The walk and each of its eight steps passed; none was skipped or left out.
    summary = dict(
        line.removeprefix("ℹ ").split(" ", 1)
        for line in walked.stdout.splitlines()
        if line.startswith("ℹ ")
    )
    assert summary["pass"] == "9", walked.stdout
    assert (summary["fail"], summary["skipped"], summary["todo"]) == ("0", "0", "0")
