"""Generate the client libraries from docs/openapi.json (`make clients`).

- clients/python: the whole package, by openapi-python-client (its own environment in
  .tools/python-generator, synced from clients/python-generator/uv.lock);
- clients/typescript/src/schema.ts: the types of every path and schema, by openapi-typescript
  (clients/typescript/node_modules); src/index.ts, written by hand, puts them on openapi-fetch.

Both can be written under another root and from another document, so a test can regenerate
into a temporary directory and compare with what is committed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "docs" / "openapi.json"
PYTHON_GENERATOR = ROOT / ".tools" / "python-generator" / "bin"
PYTHON_CONFIG = ROOT / "clients" / "python-generator" / "config.yaml"
OPENAPI_TYPESCRIPT = (
    ROOT / "clients" / "typescript" / "node_modules" / ".bin" / "openapi-typescript"
)
PYTHON_CLIENT = Path("clients") / "python"
TYPESCRIPT_SCHEMA = Path("clients") / "typescript" / "src" / "schema.ts"
# What a generator or an install leaves beside the code, never committed.
IGNORED = {".ruff_cache", "__pycache__", ".venv", "build", "dist"}


def _run(command: list[str], **env: str) -> None:
    result = subprocess.run(  # noqa: S603 - the generators, by their paths in this checkout
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{result.stdout}\n{result.stderr}")


def _missing() -> str | None:
    for tool in (PYTHON_GENERATOR / "openapi-python-client", OPENAPI_TYPESCRIPT):
        if not tool.exists():
            return f"{tool.relative_to(ROOT)} is missing: run `make client-tools`"
    return None


def generate(root: Path, spec: Path = SPEC) -> None:
    """Write clients/python and clients/typescript/src/schema.ts under `root` from `spec`."""
    if (problem := _missing()) is not None:
        raise SystemExit(problem)
    target = root / PYTHON_CLIENT
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "python"
        # The generator formats with the ruff of its own environment (a post hook).
        _run(
            [
                str(PYTHON_GENERATOR / "openapi-python-client"),
                "generate",
                "--path",
                str(spec),
                "--config",
                str(PYTHON_CONFIG),
                "--meta",
                "uv",
                "--output-path",
                str(output),
            ],
            PATH=f"{PYTHON_GENERATOR}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(output, target, ignore=shutil.ignore_patterns(*IGNORED))
    schema = root / TYPESCRIPT_SCHEMA
    schema.parent.mkdir(parents=True, exist_ok=True)
    _run([str(OPENAPI_TYPESCRIPT), str(spec), "--output", str(schema)])


def main() -> None:
    """`generate_clients.py [ROOT [SPEC]]`: into this checkout from docs/openapi.json unless
    told otherwise."""
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    generate(root, Path(sys.argv[2]) if len(sys.argv) > 2 else SPEC)
    print(f"generated {root / PYTHON_CLIENT} and {root / TYPESCRIPT_SCHEMA}")


if __name__ == "__main__":
    main()
