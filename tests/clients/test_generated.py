"""The committed client libraries are what `make clients` generates from docs/openapi.json
(itself checked against the served document by tests/test_openapi.py): regenerated into a
temporary directory, every file must be the same, and no file may be missing or extra."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.clients.conftest import ROOT

GENERATE = ROOT / "scripts" / "generate_clients.py"
SPEC = ROOT / "docs" / "openapi.json"
GENERATED = (Path("clients") / "python", Path("clients") / "typescript" / "src" / "schema.ts")
# What an install or a run leaves beside the generated code, never committed.
LEFTOVERS = {"__pycache__", ".ruff_cache", ".venv", "build", "dist"}


def generated_files(root: Path) -> dict[str, bytes]:
    files = {}
    for base in (root / path for path in GENERATED):
        for path in [base] if base.is_file() else sorted(base.rglob("*")):
            relative = path.relative_to(root)
            leftover = LEFTOVERS.intersection(relative.parts) or any(
                part.endswith(".egg-info") for part in relative.parts
            )
            if path.is_file() and not leftover:
                files[relative.as_posix()] = path.read_bytes()
    return files


def regenerate(root: Path, spec: Path = SPEC) -> dict[str, bytes]:
    done = subprocess.run(
        [sys.executable, str(GENERATE), str(root), str(spec)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return generated_files(root)


def stale(committed: dict[str, bytes], fresh: dict[str, bytes]) -> list[str]:
    return sorted(
        name for name in committed.keys() | fresh.keys() if committed.get(name) != fresh.get(name)
    )


def test_the_committed_clients_are_generated_from_the_committed_spec(tmp_path: Path) -> None:
    committed = generated_files(ROOT)
    fresh = regenerate(tmp_path)
    assert "clients/python/kassa_client/models/problem.py" in fresh
    assert "clients/typescript/src/schema.ts" in fresh
    assert stale(committed, fresh) == [], "the generated clients are stale: run `make clients`"


def test_a_changed_spec_leaves_the_committed_clients_stale(tmp_path: Path) -> None:
    """The check above can fail: one more problem code in the document is one more member of
    ProblemCode in each language, and both show as stale."""
    document = json.loads(SPEC.read_text(encoding="utf-8"))
    document["components"]["schemas"]["ProblemCode"]["enum"].append("card_on_fire")
    changed = tmp_path / "openapi.json"
    changed.write_text(json.dumps(document), encoding="utf-8")

    fresh = regenerate(tmp_path / "out", changed)

    assert stale(generated_files(ROOT), fresh) == [
        "clients/python/kassa_client/models/problem_code.py",
        "clients/typescript/src/schema.ts",
    ]
