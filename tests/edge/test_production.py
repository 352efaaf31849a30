"""`KASSA_ENV=production` refuses an unsafe set-up at `kassa serve`, each time with one line on
stderr naming what to fix — never a traceback — and starts when the set-up is sound."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trustme

from tests.acceptance.conftest import Server
from tests.conftest import TEST_VAULT_KEY

# Real server processes (two, some of them) on a possibly busy machine.
pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(300)]

KASSA = shutil.which("kassa", path=str(Path(sys.executable).parent))
JWT_SECRET = "production-secret-G4_MTS4BREydFpMtbplphLn88VbLNtVjyUJ4etuo5MKMJN3k"
UNREACHABLE_PG = "postgresql+asyncpg://kassa@127.0.0.1:1/kassa"


def production(**overrides: str) -> dict[str, str]:
    """A sound production set-up (but for the database, which is never reached here)."""
    settings = {
        "KASSA_ENV": "production",
        "KASSA_JWT_SECRET": JWT_SECRET,
        "KASSA_VAULT_KEYS": TEST_VAULT_KEY,
        "KASSA_DATABASE_URL": UNREACHABLE_PG,
        "KASSA_TRUSTED_PROXIES": "10.0.0.0/8",
    }
    settings.update(overrides)
    return {k: v for k, v in settings.items() if v}


def serve_refused(workdir: Path, *args: str, **settings: str) -> str:
    assert KASSA is not None
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KASSA_")}
    result = subprocess.run(
        [KASSA, "serve", "--port", "1", *args],
        cwd=workdir,
        env=env | settings,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kassa: "), lines[0]
    assert JWT_SECRET not in result.stdout + result.stderr
    assert TEST_VAULT_KEY not in result.stdout + result.stderr
    assert list(workdir.iterdir()) == []  # no generated secret, no database file
    return lines[0]


def test_production_refuses_a_generated_jwt_secret(tmp_path: Path) -> None:
    line = serve_refused(tmp_path, **production(KASSA_JWT_SECRET=""))
    assert "KASSA_JWT_SECRET" in line


def test_production_refuses_a_short_jwt_secret(tmp_path: Path) -> None:
    line = serve_refused(tmp_path, **production(KASSA_JWT_SECRET="short-secret"))
    assert "KASSA_JWT_SECRET" in line
    assert "32 bytes" in line
    assert "short-secret" not in line


def test_production_refuses_generated_vault_keys(tmp_path: Path) -> None:
    line = serve_refused(tmp_path, **production(KASSA_VAULT_KEYS=""))
    assert "KASSA_VAULT_KEYS" in line


@pytest.mark.parametrize("url", ["", "sqlite+aiosqlite:///kassa.db"], ids=["default", "explicit"])
def test_production_refuses_sqlite(tmp_path: Path, url: str) -> None:
    line = serve_refused(tmp_path, **production(KASSA_DATABASE_URL=url))
    assert "SQLite" in line


def test_production_refuses_to_serve_without_tls_or_a_trusted_proxy(tmp_path: Path) -> None:
    # Refused before the (unreachable) database is tried: the line is about TLS.
    line = serve_refused(tmp_path, **production(KASSA_TRUSTED_PROXIES=""))
    assert "TLS" in line
    assert "--tls-certfile" in line
    assert "KASSA_TRUSTED_PROXIES" in line


@pytest.mark.parametrize("proxies", ["0.0.0.0/0", "10.0.0.1, ::/0"])
def test_production_refuses_trusting_every_address_as_a_proxy(tmp_path: Path, proxies: str) -> None:
    line = serve_refused(tmp_path, **production(KASSA_TRUSTED_PROXIES=proxies))
    assert "KASSA_TRUSTED_PROXIES" in line


def test_invalid_trusted_proxies_are_refused_naming_the_entry(tmp_path: Path) -> None:
    line = serve_refused(tmp_path, KASSA_TRUSTED_PROXIES="10.0.0.0/8, proxy.internal")
    assert "KASSA_TRUSTED_PROXIES" in line
    assert "proxy.internal" in line


def test_tls_files_that_are_not_a_certificate_and_key_are_refused(tmp_path: Path) -> None:
    files = tmp_path.parent / f"{tmp_path.name}-files"
    files.mkdir()
    (files / "cert.pem").write_text("not a certificate\n")
    (files / "key.pem").write_text("not a key\n")
    line = serve_refused(
        tmp_path,
        "--tls-certfile",
        str(files / "cert.pem"),
        "--tls-keyfile",
        str(files / "key.pem"),
        **production(KASSA_TRUSTED_PROXIES=""),
    )
    assert "TLS" in line


def test_production_serves_https_with_tls_files(
    serve: Callable[..., Server], empty_pg_url: str, tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    server = serve(
        tls=(certfile, keyfile, trust),
        env="production",
        jwt_secret=JWT_SECRET,
        vault_keys=TEST_VAULT_KEY,
        database_url=empty_pg_url,
    )
    with httpx.Client(verify=trust, timeout=10) as client:
        response = client.get(f"https://127.0.0.1:{server.port}/readyz")
    assert response.status_code == 200
    assert "strict-transport-security" in response.headers


def test_production_behind_a_trusted_proxy_serves_plain_http(
    serve: Callable[..., Server], empty_pg_url: str
) -> None:
    server = serve(
        env="production",
        jwt_secret=JWT_SECRET,
        vault_keys=TEST_VAULT_KEY,
        database_url=empty_pg_url,
        trusted_proxies="10.0.0.0/8",
    )
    assert httpx.get(server.base_url + "/readyz", timeout=10).status_code == 200


def test_production_refuses_the_simulators_delay_hook(tmp_path: Path) -> None:
    line = serve_refused(tmp_path, **production(KASSA_SIMULATOR_DELAY_MS="12000"))
    assert "KASSA_SIMULATOR_DELAY_MS" in line


def test_production_refuses_trusting_everyone_in_two_halves_in_one_line(tmp_path: Path) -> None:
    line = serve_refused(tmp_path, **production(KASSA_TRUSTED_PROXIES="0.0.0.0/1,128.0.0.0/1"))
    assert "KASSA_TRUSTED_PROXIES" in line


def test_production_refuses_a_low_entropy_jwt_secret_in_one_line(tmp_path: Path) -> None:
    line = serve_refused(tmp_path, **production(KASSA_JWT_SECRET="a" * 32))
    assert "KASSA_JWT_SECRET" in line
    assert "a" * 32 not in line
