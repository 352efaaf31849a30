"""Write the OpenAPI document kassa serves to docs/openapi.json (`make openapi`).

The app is built on a throwaway SQLite database in a temporary directory (nothing is
served or migrated); the document does not depend on settings.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from kassa.app import create_app
from kassa.openapi import render
from kassa.settings import load_settings

TARGET = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET
    with tempfile.TemporaryDirectory() as workdir:
        settings = load_settings(
            {
                "KASSA_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/kassa.db",
                "KASSA_LOG_LEVEL": "WARNING",
            }
        )
        target.write_text(render(create_app(settings).openapi()), encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
