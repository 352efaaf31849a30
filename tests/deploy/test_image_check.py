"""`make image-check` (scripts/image_check.py) and the image's entry point.

The pure parts run in `make test`. The tests marked `image` need podman and the image that
`make image-check` has just built (it runs them right after its own check): each builds a
broken variant on top of that image in a second or two and shows that the check meant to
catch it does — an image that runs as root, one that writes to its root file system, one
whose HEALTHCHECK fails or is missing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy/docker/entrypoint.sh"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("image_check", ROOT / "scripts/image_check.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


check: Any = _load()


# Pure parts (make test) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "root"),
    [
        ("", True),
        ("root", True),
        ("0", True),
        ("0:0", True),
        ("root:kassa", True),
        ("10001:10001", False),
        ("kassa", False),
        ("10001", False),
    ],
)
def test_a_user_is_root_when_empty_zero_or_named_root(user: str, root: bool) -> None:
    assert check.is_root_user(user) is root


def test_production_flags_give_a_read_only_root_no_capabilities_and_explicit_ulimits() -> None:
    flags = check.production_flags()
    assert "--read-only" in flags
    assert "--read-only-tmpfs=false" in flags  # only the named tmpfs is writable
    assert "--cap-drop=ALL" in flags
    assert "--security-opt=no-new-privileges" in flags
    assert any(f.startswith("--ulimit=nofile=") for f in flags)
    assert any(f.startswith("--ulimit=nproc=") for f in flags)


def test_secrets_reach_containers_by_name_never_on_the_command_line() -> None:
    jwt = secrets.token_urlsafe(48)
    deployment = check.Deployment(
        env={
            "KASSA_ENV": "production",
            "KASSA_JWT_SECRET": jwt,
            "KASSA_VAULT_KEYS": "k1:secret-key-material",
            "KASSA_DATABASE_URL": "postgresql+asyncpg://kassa:pw@db/kassa",
        }
    )
    flags = deployment.env_flags(KASSA_PORT="8123")
    assert "--env=KASSA_JWT_SECRET" in flags
    assert "--env=KASSA_ENV=production" in flags
    assert "--env=KASSA_PORT=8123" in flags
    joined = " ".join(flags)
    assert jwt not in joined
    assert "secret-key-material" not in joined
    assert "pw@" not in joined
    assert deployment.secrets()["KASSA_JWT_SECRET"] == jwt


def test_a_webhook_signature_is_verified_with_its_secret() -> None:
    key = secrets.token_bytes(24)
    secret = "whsec_" + base64.b64encode(key).decode()
    body = b'{"type":"payment.created"}'
    headers = {"webhook-id": "evt_1", "webhook-timestamp": "1700000000"}
    mac = hmac.new(key, b"evt_1.1700000000." + body, hashlib.sha256).digest()
    good = {**headers, "webhook-signature": "v1," + base64.b64encode(mac).decode()}
    check.verify_signature(secret, good, body)
    with pytest.raises(check.CheckFailed):
        check.verify_signature(secret, good, body + b" ")
    other = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    with pytest.raises(check.CheckFailed):
        check.verify_signature(other, good, body)


def test_an_unreachable_postgres_or_redis_fails_the_check_never_skips_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    # Nothing listens on `port` now.
    monkeypatch.setattr(check, "POSTGRES_ADMIN_URL", f"postgresql://postgres@127.0.0.1:{port}/x")
    with pytest.raises(check.CheckFailed, match="PostgreSQL is not reachable"):
        check.require_services()
    monkeypatch.undo()
    monkeypatch.setattr(check, "REDIS_URL", f"redis://127.0.0.1:{port}/0")
    with pytest.raises(check.CheckFailed, match="Redis is not reachable"):
        check.require_services()


def _entrypoint(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The entry point with a `kassa` on PATH that prints its arguments and KASSA_* names."""
    fake = tmp_path / "bin" / "kassa"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text('#!/bin/sh\necho "args: $*"\nenv | grep "^KASSA_" | sort\n')
    fake.chmod(0o755)
    return subprocess.run(
        ["/bin/sh", str(ENTRYPOINT), *args],
        env={"PATH": f"{fake.parent}:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_entry_point_serves_on_kassa_port_and_hides_it_from_kassa(tmp_path: Path) -> None:
    done = _entrypoint(tmp_path, "serve", KASSA_PORT="8123", KASSA_WORKERS="3", KASSA_ENV="x")
    assert done.returncode == 0, done.stderr
    assert "args: serve --host 0.0.0.0 --port 8123 --workers 3" in done.stdout
    assert "KASSA_ENV=x" in done.stdout
    assert "KASSA_PORT" not in done.stdout.split("\n", 1)[1]
    assert "KASSA_WORKERS" not in done.stdout.split("\n", 1)[1]


def test_the_entry_point_serves_on_8000_by_default(tmp_path: Path) -> None:
    done = _entrypoint(tmp_path)
    assert "args: serve --host 0.0.0.0 --port 8000 --workers 2" in done.stdout


def test_the_entry_point_refuses_a_port_that_is_not_a_number(tmp_path: Path) -> None:
    done = _entrypoint(tmp_path, KASSA_PORT="80; rm -rf /")
    assert done.returncode == 2
    assert "KASSA_PORT must be a port number" in done.stderr
    assert "args:" not in done.stdout


# Against the built image (make image-check) ------------------------------------------------


@pytest.fixture(scope="module")
def podman() -> Any:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (apt-get install podman runc)", pytrace=False)
    return check.Podman()


@pytest.fixture(scope="module")
def image(podman: Any) -> str:
    name = os.environ.get("KASSA_IMAGE_CHECK_IMAGE", check.IMAGE)
    if not podman.image_exists(name):
        pytest.fail(f"{name} is not built: run `make image-check`", pytrace=False)
    return str(name)


@pytest.fixture(scope="module")
def variant(podman: Any, image: str) -> Iterator[Any]:
    made: list[str] = []

    def build(tail: str) -> str:
        tag = f"localhost/kassa-variant:{secrets.token_hex(4)}"
        check.build_variant(podman, image, tail, tag)
        made.append(tag)
        return tag

    yield build
    for tag in made:
        podman.run("rmi", "--force", tag, check=False, quiet=True)


@pytest.mark.image
def test_the_built_image_passes_the_checks_its_variants_fail(podman: Any, image: str) -> None:
    assert check.check_user(podman, image) == "10001:10001"
    check.check_code_not_writable(podman, image)
    check.check_read_only_start(podman, image)
    check.check_health_of_image(podman, image)


@pytest.mark.image
def test_an_image_that_runs_as_root_fails(podman: Any, variant: Any) -> None:
    as_root = variant("USER root")
    with pytest.raises(check.CheckFailed, match="runs as root"):
        check.check_user(podman, as_root)


@pytest.mark.image
def test_an_image_that_names_a_user_but_starts_as_uid_0_fails(podman: Any, variant: Any) -> None:
    # A named user that is uid 0 after all: only running it tells.
    alias = variant(
        "USER root\nRUN useradd --non-unique --uid 0 --no-create-home admin\nUSER admin"
    )
    with pytest.raises(check.CheckFailed, match="uid 0"):
        check.check_user(podman, alias)


@pytest.mark.image
def test_an_image_that_writes_to_its_root_file_system_fails(podman: Any, variant: Any) -> None:
    # Its working directory handed to the service user, and a pid file written there at start.
    writes = variant(
        "USER root\n"
        "RUN chown 10001:10001 /srv/kassa \\\n"
        " && printf '#!/bin/sh\\nset -e\\necho $$ > /srv/kassa/kassa.pid\\n"
        'exec kassa-entrypoint "$@"\\n\' > /usr/local/bin/kassa-start \\\n'
        " && chmod 0755 /usr/local/bin/kassa-start\n"
        "USER 10001:10001\n"
        'ENTRYPOINT ["kassa-start"]'
    )
    with pytest.raises(
        check.CheckFailed, match=r"exited with \d+ before serving:(.|\n)*Read-only file system"
    ):
        check.check_read_only_start(podman, writes)
    with pytest.raises(check.CheckFailed, match="can write where kassa's code lives"):
        check.check_code_not_writable(podman, writes)


@pytest.mark.image
def test_an_image_whose_health_check_fails_fails(podman: Any, variant: Any) -> None:
    # A probe on a port nothing serves: the server is up, the health check says otherwise.
    wrong_port = variant(
        'HEALTHCHECK --interval=15s --timeout=5s CMD ["python", "-c", '
        "\"import urllib.request; urllib.request.urlopen('http://127.0.0.1:9/healthz', "
        'timeout=2)"]'
    )
    with pytest.raises(check.CheckFailed, match="HEALTHCHECK fails"):
        check.check_health_of_image(podman, wrong_port)


@pytest.mark.image
def test_an_image_without_a_health_check_fails(podman: Any, variant: Any) -> None:
    with pytest.raises(check.CheckFailed, match="no HEALTHCHECK"):
        check.healthcheck_of(podman, variant("HEALTHCHECK NONE"))
