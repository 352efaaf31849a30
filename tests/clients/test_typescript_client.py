"""The TypeScript client (clients/typescript) against `kassa serve` and `kassa worker`: its
walk, clients/typescript/test/walk.test.ts, and the README's TypeScript examples are
type-checked and compiled with the package's TypeScript, then run by the machine's Node.js
test runner (`node --test`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.acceptance.conftest import Server
from tests.acceptance.test_lifecycle import register_and_login
from tests.clients.conftest import ROOT, a_real_delivery, readme_examples

pytestmark = pytest.mark.acceptance

PACKAGE = ROOT / "clients" / "typescript"
TSC = PACKAGE / "node_modules" / ".bin" / "tsc"
README_TEST = """\
import assert from "node:assert/strict";
import {{ test }} from "node:test";
{imports}

test("README: create and process a payment", async () => {{
  const apiKey = process.env.KASSA_API_KEY as string;
{pay}
  assert.equal(error, undefined);
  assert.equal(payment?.status, "completed");
}});

test("README: verify a webhook", () => {{
  const {{ secret: endpointSecret, body: rawBody, headers }} = JSON.parse(
    process.env.KASSA_DELIVERY as string,
  ) as {{ secret: string; body: string; headers: Record<string, string> }};
{verify}
  assert.equal(event.type, "payment.completed");
  assert.throws(() => webhook.verify(rawBody.replace('"amount":2500', '"amount":1'), headers));
}});
"""


def readme_test() -> str:
    """The README's TypeScript examples as a test file: their imports on top (the package by
    its path here), their statements in a test each, with what a merchant would have."""
    imports: list[str] = []
    bodies = []
    for block in readme_examples("ts"):
        lines = block.replace('"@kassa/client"', '"../src/index.js"').splitlines()
        imports += [line for line in lines if line.startswith("import ") and line not in imports]
        bodies.append("\n".join(line for line in lines if not line.startswith("import ")))
    pay, verify = bodies
    pay = pay.replace('"http://127.0.0.1:8000"', "process.env.KASSA_BASE_URL")
    return README_TEST.format(imports="\n".join(imports), pay=pay, verify=verify)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's sources and tests, with the README's examples, compiled by its tsc."""
    assert TSC.exists(), "clients/typescript/node_modules is missing: run `make client-tools`"
    package = tmp_path_factory.mktemp("typescript")
    for part in ("src", "test"):
        shutil.copytree(PACKAGE / part, package / part)
    shutil.copy(PACKAGE / "tsconfig.json", package)
    shutil.copy(PACKAGE / "package.json", package)
    (package / "node_modules").symlink_to(PACKAGE / "node_modules")
    (package / "test" / "readme.test.ts").write_text(readme_test(), encoding="utf-8")
    done = subprocess.run(
        [str(TSC), "-p", str(package)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return package / "dist" / "test"


def node_test(script: Path, **env: str) -> dict[str, str]:
    """Run one compiled test file with `node --test`; its summary (pass, fail, skipped…)."""
    node = shutil.which("node")
    assert node is not None, "Node.js is not installed"
    done = subprocess.run(
        [node, "--test", "--test-reporter=spec", str(script)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = dict(
        line.removeprefix("ℹ ").split(" ", 1)
        for line in done.stdout.splitlines()
        if line.startswith("ℹ ")
    )
    assert (summary["fail"], summary["skipped"], summary["todo"]) == ("0", "0", "0"), done.stdout
    return summary


def test_the_typescript_client_walks_a_payments_life(live: Server, compiled: Path) -> None:
    summary = node_test(compiled / "walk.test.js", KASSA_BASE_URL=live.base_url)
    assert summary["pass"] == "13"  # the walk and each of its twelve steps


def test_the_readme_typescript_examples_run_as_shown(live: Server, compiled: Path) -> None:
    with live.client() as client:
        user = register_and_login(client)
        key = client.post(
            "/api/keys", json={"name": "shop", "mode": "test"}, headers=user["headers"]
        )
        assert key.status_code == 201, key.text
    delivery = a_real_delivery(live)
    summary = node_test(
        compiled / "readme.test.js",
        KASSA_BASE_URL=live.base_url,
        KASSA_API_KEY=key.json()["secret"],
        KASSA_DELIVERY=json.dumps(
            {
                "secret": delivery.secret,
                "body": delivery.body.decode(),
                # As Node hands them to a merchant's server: lower-case names.
                "headers": {name.lower(): value for name, value in delivery.headers.items()},
            }
        ),
    )
    assert summary["pass"] == "2"
