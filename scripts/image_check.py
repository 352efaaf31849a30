"""`make image-check`: build kassa's image with podman and run it as production would.

No container registry is reachable here, so no base image can be pulled. A stand-in for
`python:3.11-slim` is built once from Debian's own packages (debootstrap: bookworm with
Python 3.11, pip and venv) and cached under `.cache/image/`, so that a rerun takes seconds.
kassa's image is then built from the real Dockerfile (`PYTHON_IMAGE` names the stand-in);
pip and uv inside the build reach the package index with the host's CA bundle and index
settings, mounted read-only into the build steps and never part of a layer.

The image is then run the way production runs it: a read-only root file system (with a
tmpfs `/tmp`), its own non-root user, no capabilities, no new privileges, on the host
network, `KASSA_ENV=production` with its secrets passed from the environment (never on a
command line), against this machine's PostgreSQL (a database made for the check and dropped
after it) and Redis (a key prefix of its own). It must: run `migrate`; serve; pass its own
HEALTHCHECK; walk a payment's whole life over HTTP behind a trusted proxy (X-Forwarded-Proto:
https from 127.0.0.1); deliver a signed webhook from `kassa worker` in a second container to
an https receiver on loopback; and stop cleanly on SIGTERM. Then the compose sandbox's
localstripe image (deploy/localstripe) is built on the same base and kassa's image completes
a card payment through it. It prints the image's size and its start-up time.

Every check is a function that raises `CheckFailed`, so tests can run them against broken
variants of the image (one that runs as root, one that writes to its root file system, one
whose health check fails) and see them fail.

    .venv/bin/python scripts/image_check.py            # build (cached) and run every check
    .venv/bin/python scripts/image_check.py --build-only
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import http.server
import json
import os
import resource
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "image"

# The stand-in for python:3.11-slim: what the Dockerfile expects of it is `python3`/`python`
# and `pip` on PATH at /usr/local/bin (UV_PYTHON names /usr/local/bin/python3), a pip that
# installs into the system interpreter, `groupadd`/`useradd`, and CA certificates.
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("IMAGE_CHECK_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates")
BASE_REPOSITORY = "localhost/kassa-python-base"
# What slim images leave out: package caches and lists, documentation, translations.
BASE_TRIM = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
# Bump to rebuild every cached base (its tag is a hash of this recipe).
BASE_RECIPE_VERSION = "1"

# Tags of this checkout's own (two checkouts on one machine never retag each other's image).
CHECKOUT = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
IMAGE = f"localhost/kassa:image-check-{CHECKOUT}"


def _ulimit(name: str, limit: int, wanted: int) -> str:
    """An explicit ulimit for the containers, never above this host's hard limit (podman's
    default would copy the host's, and runc refuses what the host does not allow)."""
    hard = resource.getrlimit(limit)[1]
    value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    return f"{name}={value}:{value}"


NOFILE = _ulimit("nofile", resource.RLIMIT_NOFILE, 16384)
NPROC = _ulimit("nproc", resource.RLIMIT_NPROC, 4096)
POSTGRES_ADMIN_URL = os.environ.get(
    "IMAGE_CHECK_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("IMAGE_CHECK_REDIS", "redis://127.0.0.1:6379/0")
START_TIMEOUT_SECONDS = 90.0
STOP_GRACE_SECONDS = 20
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "cvc": "123"}


class CheckFailed(Exception):
    """One production property of the image does not hold."""


def say(message: str) -> None:
    print(f"image-check: {message}", flush=True)


# podman -------------------------------------------------------------------------------------


def containers_conf() -> Path:
    """A project-local containers.conf (podman reads it through CONTAINERS_CONF): runc, which
    copes with a hybrid cgroup setup where crun refuses, and explicit ulimits, since the
    defaults (inherited from the host) may be refused."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "containers.conf"
    text = (
        "# Written by scripts/image_check.py.\n"
        "[containers]\n"
        f'default_ulimits = ["{NOFILE}", "{NPROC}"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
    )
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


class Podman:
    """podman with the project's containers.conf; every call is echoed."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = {**os.environ, "CONTAINERS_CONF": str(containers_conf()), **(env or {})}

    def run(
        self,
        *args: str,
        check: bool = True,
        quiet: bool = False,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        if not quiet:
            say("podman " + " ".join(args))
        done = subprocess.run(  # noqa: S603  (podman, with arguments built here)
            ["podman", *args],  # noqa: S607  (podman from PATH, as a user runs it)
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise CheckFailed(
                f"podman {args[0]} exited with {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )
        return done

    def image_exists(self, name: str) -> bool:
        return self.run("image", "exists", name, check=False, quiet=True).returncode == 0

    def inspect_image(self, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(
            self.run("image", "inspect", name, quiet=True).stdout
        )
        return found[0]

    def inspect_container(self, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(
            self.run("container", "inspect", name, quiet=True).stdout
        )
        return found[0]

    def logs(self, name: str) -> str:
        done = self.run("logs", name, check=False, quiet=True)
        return done.stdout + done.stderr

    def remove(self, name: str) -> None:
        self.run("rm", "--force", "--time", "0", name, check=False, quiet=True)


# The base image -----------------------------------------------------------------------------


def base_recipe() -> str:
    recipe = json.dumps(
        [BASE_RECIPE_VERSION, DEBIAN_SUITE, BASE_PACKAGES, BASE_TRIM, BASE_ENV], sort_keys=True
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def base_image(podman: Podman) -> str:
    """The local stand-in for python:3.11-slim, built once: debootstrap's root file system
    is cached as a tarball, and the image imported from it is tagged with the recipe's hash."""
    tag = f"{BASE_REPOSITORY}:{DEBIAN_SUITE}-{base_recipe()}"
    if podman.image_exists(tag):
        say(f"base image {tag} (cached)")
        return tag
    tarball = CACHE / f"rootfs-{DEBIAN_SUITE}-{base_recipe()}.tar"
    if not tarball.exists():
        build_rootfs(tarball)
    changes = [f"ENV {name}={value}" for name, value in BASE_ENV.items()]
    changes.append('CMD ["python3"]')
    args = ["import"]
    for change in changes:
        args += ["--change", change]
    podman.run(*args, str(tarball), tag)
    return tag


def build_rootfs(tarball: Path) -> None:
    """debootstrap Debian with Python 3.11, shaped like the official slim image."""
    if shutil.which("debootstrap") is None:
        raise CheckFailed("debootstrap is missing (apt-get install debootstrap)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as work:
        root = Path(work) / "root"
        say(f"debootstrap {DEBIAN_SUITE} from {DEBIAN_MIRROR} (once; cached as {tarball.name})")
        subprocess.run(  # noqa: S603
            [  # noqa: S607  (debootstrap from PATH)
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                DEBIAN_SUITE,
                str(root),
                DEBIAN_MIRROR,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for relative in BASE_TRIM:
            target = root / relative
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir()
        # The official image's interpreter lives in /usr/local/bin, and its pip installs
        # into the system interpreter (no PEP 668 marker).
        local_bin = root / "usr/local/bin"
        for name in ("python3", "python"):
            link = local_bin / name
            if not link.is_symlink():
                link.symlink_to("/usr/bin/python3")
        (root / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
        partial = tarball.with_suffix(".partial")
        subprocess.run(  # noqa: S603
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."],  # noqa: S607
            check=True,
        )
        partial.rename(tarball)
    say(f"root file system built in {time.monotonic() - started:.0f} s")


# kassa's image ------------------------------------------------------------------------------


def host_ca_bundle() -> Path:
    for candidate in (
        os.environ.get("SSL_CERT_FILE"),
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise CheckFailed("no CA bundle found on this host (set SSL_CERT_FILE)")


def build_settings() -> tuple[Path, Path]:
    """The pip and uv configuration handed to the build: the host's CA bundle, and the
    host's package index when it names a reachable one (not a local file:// mirror, which
    does not exist inside the build)."""
    index_lines = []
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        if key.split(".")[-1] in {"index-url", "trusted-host"} and "file:" not in value:
            index_lines.append(f"{key.split('.')[-1]} = {value}")
    pip_conf = CACHE / "pip.conf"
    pip_conf.write_text(
        "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
        + "".join(f"{line}\n" for line in index_lines)
    )
    uv_toml = CACHE / "uv.toml"
    # The system's CA store (the host's bundle, mounted) rather than uv's built-in roots.
    uv_toml.write_text("native-tls = true\n")
    return pip_conf, uv_toml


def build_image(
    podman: Podman, base: str, tag: str = IMAGE, context: Path = ROOT, network: str = "host"
) -> float:
    """An image from the real Dockerfile in `context` on the local base; the seconds it took.
    The image it replaces under `tag` is removed, so reruns do not pile up old layers."""
    pip_conf, uv_toml = build_settings()
    previous = podman.inspect_image(tag)["Id"] if podman.image_exists(tag) else None
    started = time.monotonic()
    podman.run(
        "build",
        # The Docker image format: OCI's has no HEALTHCHECK, and podman would drop it.
        "--format=docker",
        f"--network={network}",
        "--layers",
        f"--ulimit={NOFILE}",
        f"--ulimit={NPROC}",
        f"--build-arg=PYTHON_IMAGE={base}",
        f"--volume={host_ca_bundle()}:/etc/ssl/certs/ca-certificates.crt:ro",
        f"--volume={pip_conf}:/etc/pip.conf:ro",
        f"--volume={uv_toml}:/etc/uv/uv.toml:ro",
        "--file",
        str(context / "Dockerfile"),
        "--tag",
        tag,
        str(context),
        timeout=1800,
    )
    took = time.monotonic() - started
    if previous is not None and previous != podman.inspect_image(tag)["Id"]:
        podman.run("rmi", previous, check=False, quiet=True)  # in use by a variant: kept
    return took


def build_variant(podman: Podman, base_image_tag: str, dockerfile_tail: str, tag: str) -> None:
    """A variant of an image: a few Dockerfile lines on top of it (for the negative tests)."""
    with tempfile.TemporaryDirectory(prefix="kassa-variant-") as context:
        (Path(context) / "Dockerfile").write_text(f"FROM {base_image_tag}\n{dockerfile_tail}\n")
        podman.run("build", "--format=docker", "--network=none", "--tag", tag, context, quiet=True)


# Checks of the image itself -----------------------------------------------------------------


def is_root_user(user: str) -> bool:
    """Whether an image's `User` (`name`, `uid`, `uid:gid`, or empty) runs as root."""
    name = user.split(":", 1)[0].strip()
    return name in {"", "0", "root"}


def check_user(podman: Podman, image: str) -> str:
    """The image names a non-root user, and a process started from it is not uid 0."""
    user = str(podman.inspect_image(image)["Config"].get("User") or "")
    if is_root_user(user):
        raise CheckFailed(f"the image runs as root (User is {user!r}); set USER to a non-root uid")
    uid = podman.run(
        "run", "--rm", "--network=none", "--entrypoint", "id", image, "-u", quiet=True
    ).stdout.strip()
    if uid == "0":
        raise CheckFailed("a process started from the image runs as uid 0")
    return user


def healthcheck_of(podman: Podman, image: str) -> list[str]:
    found = podman.inspect_image(image)
    # podman shows it beside Config, docker inside it.
    healthcheck = found.get("Healthcheck") or found["Config"].get("Healthcheck") or {}
    test = healthcheck.get("Test") or []
    if not test or test[0] == "NONE":
        raise CheckFailed("the image has no HEALTHCHECK")
    return list(test)


def image_size(podman: Podman, image: str) -> int:
    return int(podman.inspect_image(image)["Size"])


# Running it as production does --------------------------------------------------------------


def production_flags() -> list[str]:
    """What production gives every kassa container, and nothing more."""
    return [
        "--read-only",
        "--read-only-tmpfs=false",  # only the /tmp below is writable
        "--tmpfs=/tmp:rw,nosuid,nodev,noexec,size=64m",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--ulimit={NOFILE}",
        f"--ulimit={NPROC}",
        "--init",
        "--network=host",
    ]


@dataclass
class Deployment:
    """One deployment's settings: names of environment variables handed to the containers
    (values from this process's environment, never on a command line)."""

    env: dict[str, str]
    secret_names: tuple[str, ...] = ("KASSA_JWT_SECRET", "KASSA_VAULT_KEYS", "KASSA_DATABASE_URL")
    containers: list[str] = field(default_factory=list)

    def env_flags(self, **extra: str) -> list[str]:
        flags = [f"--env={name}" for name in self.secret_names]
        merged = {k: v for k, v in self.env.items() if k not in self.secret_names} | extra
        flags += [f"--env={name}={value}" for name, value in sorted(merged.items())]
        return flags

    def secrets(self) -> dict[str, str]:
        return {name: self.env[name] for name in self.secret_names}


def run_once(podman: Podman, deployment: Deployment, image: str, *command: str) -> str:
    """A one-off container (`migrate`); its output. Fails the check on a non-zero exit."""
    done = podman.run(
        "run",
        "--rm",
        *production_flags(),
        *deployment.env_flags(),
        image,
        *command,
        check=False,
        env=deployment.secrets(),
        timeout=300,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise CheckFailed(f"`{' '.join(command)}` exited with {done.returncode}:\n{output[-3000:]}")
    return output


def start(
    podman: Podman,
    deployment: Deployment,
    image: str,
    name: str,
    *command: str,
    flags: Sequence[str] = (),
    **extra_env: str,
) -> None:
    deployment.containers.append(name)
    podman.run(
        "run",
        "--detach",
        f"--name={name}",
        *production_flags(),
        *flags,
        *deployment.env_flags(**extra_env),
        image,
        *command,
        env=deployment.secrets(),
    )


def wait_healthy(
    podman: Podman,
    name: str,
    url: str,
    timeout: float = START_TIMEOUT_SECONDS,
    auth: tuple[str, str] | None = None,
) -> None:
    """Until `url` answers 200; fails as soon as the container has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = podman.inspect_container(name)["State"]
        if not state.get("Running"):
            raise CheckFailed(
                f"{name} exited with {state.get('ExitCode')} before serving:\n"
                f"{podman.logs(name)[-3000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2, auth=auth).status_code == 200:
                return
        time.sleep(0.25)
    raise CheckFailed(f"{name} did not answer {url} within {timeout:.0f} s")


def check_health(podman: Podman, name: str) -> None:
    """The image's own HEALTHCHECK command, run by podman in the container, passes."""
    done = podman.run("healthcheck", "run", name, check=False)
    if done.returncode != 0:
        raise CheckFailed(
            f"the image's HEALTHCHECK fails in {name}: {(done.stdout + done.stderr).strip()}"
        )


WRITE_PROBE = """
import errno, os, sys
written = []
for path in sys.argv[1:]:
    try:
        with open(os.path.join(path, ".image-check-probe"), "w") as f:
            f.write("x")
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
    else:
        written.append(path)
print(" ".join(written))
"""
# Where the service must never write: the root, its code, its working directory, /etc.
NOT_WRITABLE = ("/", "/app/.venv", "/app/.venv/bin", "/srv/kassa", "/etc", "/usr/local/bin")


def check_root_fs_read_only(podman: Podman, name: str) -> None:
    """In the running container, no write to the root file system succeeds."""
    done = podman.run(
        "exec", name, "python", "-c", WRITE_PROBE, *NOT_WRITABLE, check=False, quiet=True
    )
    if done.returncode != 0 or done.stdout.strip():
        raise CheckFailed(
            "the container could write to its root file system: "
            f"{(done.stdout + done.stderr).strip() or 'probe failed'}"
        )


def check_code_not_writable(podman: Podman, image: str) -> None:
    """Even on a writable root file system, the image's user cannot change kassa's code or
    working directory: they belong to root."""
    done = podman.run(
        "run",
        "--rm",
        "--network=none",
        "--entrypoint",
        "python",
        image,
        "-c",
        WRITE_PROBE,
        "/app/.venv",
        "/app/.venv/bin",
        "/srv/kassa",
        check=False,
        quiet=True,
    )
    if done.returncode != 0 or done.stdout.strip():
        raise CheckFailed(
            "the image's user can write where kassa's code lives: "
            f"{(done.stdout + done.stderr).strip() or 'probe failed'}"
        )


def check_read_only_start(podman: Podman, image: str) -> None:
    """The image starts on a read-only root file system: a throw-away development server
    (SQLite in the tmpfs /tmp) must come up and answer /healthz."""
    port = free_port()
    name = f"kassa-check-ro-{secrets.token_hex(4)}"
    try:
        podman.run(
            "run",
            "--detach",
            f"--name={name}",
            *production_flags(),
            "--env=KASSA_DATABASE_URL=sqlite+aiosqlite:////tmp/kassa.db",
            "--env=KASSA_WORKERS=1",
            f"--env=KASSA_PORT={port}",
            image,
        )
        wait_healthy(podman, name, f"http://127.0.0.1:{port}/healthz")
        check_root_fs_read_only(podman, name)
    finally:
        podman.remove(name)


def check_health_of_image(podman: Podman, image: str) -> None:
    """The image's HEALTHCHECK passes on a server of it that answers /healthz (a throw-away
    development server, as in `check_read_only_start`)."""
    healthcheck_of(podman, image)
    port = free_port()
    name = f"kassa-check-health-{secrets.token_hex(4)}"
    try:
        podman.run(
            "run",
            "--detach",
            f"--name={name}",
            *production_flags(),
            "--env=KASSA_DATABASE_URL=sqlite+aiosqlite:////tmp/kassa.db",
            "--env=KASSA_WORKERS=1",
            f"--env=KASSA_PORT={port}",
            image,
        )
        wait_healthy(podman, name, f"http://127.0.0.1:{port}/healthz")
        check_health(podman, name)
    finally:
        podman.remove(name)


def stop(
    podman: Podman, name: str, grace: int = STOP_GRACE_SECONDS, stopped_line: str | None = None
) -> float:
    """SIGTERM, then the seconds it took to exit; fails unless it exited cleanly (0, or 143
    for "terminated by SIGTERM") within the grace period, logged no traceback and, when
    given, logged `stopped_line` (its own word that it shut down, not a kill)."""
    started = time.monotonic()
    podman.run("stop", f"--time={grace}", name, timeout=grace + 30)
    took = time.monotonic() - started
    code = podman.inspect_container(name)["State"].get("ExitCode")
    logs = podman.logs(name)
    if took >= grace:
        raise CheckFailed(f"{name} ignored SIGTERM for {grace} s (killed):\n{logs[-2000:]}")
    if code not in (0, 143):
        raise CheckFailed(f"{name} exited with {code} on SIGTERM:\n{logs[-2000:]}")
    if "Traceback" in logs:
        raise CheckFailed(f"{name} logged a traceback:\n{logs[-3000:]}")
    if stopped_line is not None and stopped_line not in logs:
        raise CheckFailed(f"{name} did not log {stopped_line!r} on SIGTERM:\n{logs[-2000:]}")
    return took


# A payment's whole life, and a webhook --------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Receiver:
    """An https webhook receiver on loopback, with a certificate from a throw-away CA."""

    def __init__(self, workdir: Path) -> None:
        import trustme  # a development dependency: only this check needs it

        authority = trustme.CA()
        self.ca_pem = workdir / "receiver-ca.pem"
        authority.cert_pem.write_to_path(str(self.ca_pem))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(context)
        self.received: list[tuple[dict[str, str], bytes]] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/hooks/kassa"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify_signature(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Standard Webhooks: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">."""
    import hmac

    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if "," in s]
    if not any(hmac.compare_digest(expected, s) for s in offered):
        raise CheckFailed("the webhook's signature does not verify with its secret")


def expect(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        raise CheckFailed(f"{what}: expected {status}, got {response.status_code}: {response.text}")
    body: dict[str, Any] = response.json() if response.content else {}
    return body


def payment_life(base_url: str, webhook_url: str) -> dict[str, Any]:
    """register, login, a webhook endpoint, create, process, refund (part), status,
    transactions — through a trusted proxy that says the client spoke https."""
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    email = f"image-check-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(18)
    with httpx.Client(base_url=base_url, headers=proxy, timeout=30) as client:
        expect(
            client.post(
                "/api/auth/register",
                json={"name": "Image Check", "email": email, "password": password},
            ),
            201,
            "register",
        )
        login = client.post("/api/auth/login", json={"email": email, "password": password})
        if "strict-transport-security" not in login.headers:
            raise CheckFailed("no HSTS header: the trusted proxy's X-Forwarded-Proto was ignored")
        token = expect(login, 200, "login")["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        hook = expect(
            client.post("/api/webhooks", json={"url": webhook_url, "events": ["*"]}),
            201,
            "webhook endpoint",
        )
        payment = expect(
            client.post(
                "/api/payments",
                json={
                    "amount": 2500,
                    "currency": "eur",
                    "payment_method": "credit_card",
                    "details": CARD,
                    "description": "image check",
                },
                headers={"Idempotency-Key": f"image-check-{uuid.uuid4()}"},
            ),
            201,
            "create payment",
        )
        processed = expect(
            client.post("/api/payments/process", json={"payment_id": payment["id"]}),
            200,
            "process",
        )
        if processed["status"] != "completed":
            raise CheckFailed(f"the payment did not complete: {processed}")
        refund = expect(
            client.post(f"/api/payments/{payment['id']}/refund", json={"amount": 1000}),
            201,
            "refund",
        )
        if refund["status"] != "succeeded":
            raise CheckFailed(f"the refund did not succeed: {refund}")
        status = expect(client.get(f"/api/payments/{payment['id']}/status"), 200, "status")
        if (status["status"], status["amount_refunded"]) != ("partially_refunded", 1000):
            raise CheckFailed(f"unexpected status after a 10.00 refund: {status}")
        listed = expect(client.get("/api/transactions"), 200, "transactions")
        kinds = sorted(t["type"] for t in listed["data"] if t["payment_id"] == payment["id"])
        if kinds != ["charge", "refund"]:
            raise CheckFailed(f"transactions of the payment: {kinds}, not a charge and a refund")
    return {"payment_id": payment["id"], "webhook_secret": hook["secret"]}


def wait_for_webhook(receiver: Receiver, secret: str, payment_id: str, timeout: float = 60) -> str:
    """Until a signed delivery about the payment arrived; its event type."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for headers, body in list(receiver.received):
            event = json.loads(body)
            if event.get("data", {}).get("object", {}).get("id") == payment_id:
                verify_signature(secret, headers, body)
                return str(event["type"])
        time.sleep(0.25)
    raise CheckFailed(f"no webhook about payment {payment_id} arrived within {timeout:.0f} s")


# The database and Redis of one check --------------------------------------------------------


async def _admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def require_services() -> None:
    """PostgreSQL and Redis must answer: without them the check fails, it never skips."""
    try:
        asyncio.run(_admin("SELECT 1"))
    except (TimeoutError, OSError, ImportError) as exc:
        raise CheckFailed(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}") from None
    except Exception as exc:  # asyncpg's own errors (authentication, too many clients)
        # A server shared with other test runs may be full for a moment: wait, then fail.
        for _ in range(15):
            time.sleep(2)
            with contextlib.suppress(Exception):
                asyncio.run(_admin("SELECT 1"))
                break
        else:
            raise CheckFailed(f"PostgreSQL at {POSTGRES_ADMIN_URL} refused: {exc}") from None
    target = httpx.URL(REDIS_URL.replace("redis://", "http://", 1))
    try:
        with socket.create_connection((target.host, target.port or 6379), timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(16)
    except OSError as exc:
        raise CheckFailed(f"Redis is not reachable at {REDIS_URL}: {exc}") from None
    if not answer.startswith(b"+PONG"):
        raise CheckFailed(f"Redis at {REDIS_URL} answered {answer!r} to PING")


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A database of its own on this machine's PostgreSQL, dropped afterwards; its URL."""
    name = f"kassa_image_check_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _drop_keys(prefix: str) -> None:
    import redis.asyncio

    client: Any = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
    finally:
        await client.aclose()


def vault_keys() -> str:
    return "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


# The whole check ------------------------------------------------------------------------------


def check_image(podman: Podman, image: str) -> None:
    """Everything about the image that needs no database: user, health check, read-only
    start, and code the service user cannot change."""
    user = check_user(podman, image)
    say(f"runs as {user} (not root)")
    check_code_not_writable(podman, image)
    say("its user cannot write to /app/.venv or /srv/kassa")
    check_read_only_start(podman, image)
    say("starts on a read-only root file system, where every write is refused")
    check_health_of_image(podman, image)
    say(f"its HEALTHCHECK passes: {' '.join(healthcheck_of(podman, image))[:90]}…")


def certifi_path(podman: Podman, image: str) -> str:
    return podman.run(
        "run",
        "--rm",
        "--network=none",
        "--entrypoint",
        "python",
        image,
        "-c",
        "import certifi; print(certifi.where())",
        quiet=True,
    ).stdout.strip()


def check_production(podman: Podman, image: str) -> dict[str, float]:
    """migrate, serve, health, a payment's life, a webhook from the worker, SIGTERM."""
    figures: dict[str, float] = {}
    prefix = f"kassa-image-check-{secrets.token_hex(4)}"
    run_id = secrets.token_hex(4)
    with (
        scratch_database() as database_url,
        tempfile.TemporaryDirectory(prefix="kassa-image-check-") as work,
    ):
        deployment = Deployment(
            env={
                "KASSA_ENV": "production",
                "KASSA_DATABASE_URL": database_url,
                "KASSA_JWT_SECRET": secrets.token_urlsafe(48),
                "KASSA_VAULT_KEYS": vault_keys(),
                "KASSA_REDIS_URL": REDIS_URL,
                "KASSA_REDIS_KEY_PREFIX": prefix,
                "KASSA_TRUSTED_PROXIES": "127.0.0.1/32",
                "KASSA_WEBHOOK_ALLOW_PRIVATE": "true",
                "KASSA_LOG_FORMAT": "json",
            }
        )
        receiver = Receiver(Path(work))
        api, worker = f"kassa-check-api-{run_id}", f"kassa-check-worker-{run_id}"
        try:
            run_once(podman, deployment, image, "migrate")
            say("`kassa migrate` ran against a fresh PostgreSQL database")
            port = free_port()
            started = time.monotonic()
            start(podman, deployment, image, api, "serve", KASSA_PORT=str(port), KASSA_WORKERS="2")
            base_url = f"http://127.0.0.1:{port}"
            wait_healthy(podman, api, f"{base_url}/healthz")
            figures["startup_seconds"] = time.monotonic() - started
            expect(httpx.get(f"{base_url}/readyz", timeout=5), 200, "/readyz")
            figures["ready_seconds"] = time.monotonic() - started
            say(f"serving in {figures['startup_seconds']:.1f} s; /readyz says 200")
            check_health(podman, api)
            say("the image's HEALTHCHECK passes (podman healthcheck run)")
            check_root_fs_read_only(podman, api)
            life = payment_life(base_url, receiver.url)
            say("register, login, create, process, refund, status, transactions: all as expected")
            # The worker trusts the receiver's throw-away CA the way an operator would add a
            # private CA: mounted read-only over the bundle kassa's HTTP client reads.
            ca_target = certifi_path(podman, image)
            start(
                podman,
                deployment,
                image,
                worker,
                "worker",
                "--interval=2",
                flags=[f"--volume={receiver.ca_pem}:{ca_target}:ro"],
            )
            event = wait_for_webhook(receiver, life["webhook_secret"], life["payment_id"])
            say(f"`kassa worker` delivered a signed webhook ({event}) over https")
            figures["worker_stop_seconds"] = stop(podman, worker, stopped_line="worker_stopped")
            figures["api_stop_seconds"] = stop(podman, api, stopped_line="Finished server process")
            say(
                "SIGTERM: the worker stopped in "
                f"{figures['worker_stop_seconds']:.1f} s, the API in "
                f"{figures['api_stop_seconds']:.1f} s, cleanly"
            )
        finally:
            for name in deployment.containers:
                podman.remove(name)
            receiver.close()
            asyncio.run(_drop_keys(prefix))
    return figures


LOCALSTRIPE_IMAGE = f"localhost/kassa-localstripe:image-check-{CHECKOUT}"
SANDBOX_KEY = "sk_test_localstripe_sandbox"  # localstripe takes any test key; not a secret


def check_sandbox(podman: Podman, image: str, base: str) -> None:
    """The compose sandbox's two images together: deploy/localstripe's image (the wrapper
    module inside) and kassa's with KASSA_PROCESSOR=stripe pointed at it, as
    compose.sandbox.yaml runs them (development mode: localstripe speaks only http). A card
    payment must complete, and localstripe must hold the charge."""
    build_image(podman, base, LOCALSTRIPE_IMAGE, ROOT / "deploy/localstripe")
    run_id = secrets.token_hex(4)
    stripe_port, port = free_port(), free_port()
    names = [f"kassa-check-localstripe-{run_id}", f"kassa-check-sandbox-{run_id}"]
    try:
        podman.run(
            "run",
            "--detach",
            f"--name={names[0]}",
            *production_flags(),
            LOCALSTRIPE_IMAGE,
            "python",
            "/opt/localstripe/kassa_localstripe.py",
            "--host=127.0.0.1",
            f"--port={stripe_port}",
        )
        stripe_url = f"http://127.0.0.1:{stripe_port}"
        wait_healthy(podman, names[0], f"{stripe_url}/v1/charges", auth=(SANDBOX_KEY, ""))
        podman.run(
            "run",
            "--detach",
            f"--name={names[1]}",
            *production_flags(),
            "--env=KASSA_ENV=development",
            "--env=KASSA_DATABASE_URL=sqlite+aiosqlite:////tmp/kassa.db",
            "--env=KASSA_PROCESSOR=stripe",
            f"--env=KASSA_STRIPE_API_BASE={stripe_url}",
            f"--env=KASSA_STRIPE_API_KEY={SANDBOX_KEY}",
            "--env=KASSA_WORKERS=1",
            f"--env=KASSA_PORT={port}",
            image,
        )
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(podman, names[1], f"{base_url}/healthz")
        email, password = f"sandbox-{run_id}@example.com", secrets.token_urlsafe(18)
        with httpx.Client(base_url=base_url, timeout=30) as client:
            expect(
                client.post(
                    "/api/auth/register",
                    json={"name": "Sandbox", "email": email, "password": password},
                ),
                201,
                "register",
            )
            login = client.post("/api/auth/login", json={"email": email, "password": password})
            client.headers["Authorization"] = (
                f"Bearer {expect(login, 200, 'login')['access_token']}"
            )
            client.headers["Kassa-Mode"] = "live"  # live mode: the configured processor
            payment = expect(
                client.post(
                    "/api/payments",
                    json={
                        "amount": 1999,
                        "currency": "EUR",
                        "payment_method": "credit_card",
                        "details": CARD,
                    },
                ),
                201,
                "create payment",
            )
            processed = expect(
                client.post("/api/payments/process", json={"payment_id": payment["id"]}),
                200,
                "process through localstripe",
            )
        if processed["status"] != "completed":
            raise CheckFailed(f"the sandbox payment did not complete: {processed}")
        charges = httpx.get(
            f"{stripe_url}/v1/charges", auth=(SANDBOX_KEY, ""), params={"limit": 10}
        ).json()["data"]
        if [(c["amount"], c["status"]) for c in charges] != [(1999, "succeeded")]:
            raise CheckFailed(f"localstripe does not hold the sandbox charge: {charges}")
        for name in reversed(names):
            stop(podman, name)
    finally:
        for name in names:
            podman.remove(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-only", action="store_true", help="build the image, run nothing")
    parser.add_argument("--image", default=IMAGE, help="the tag to build and check")
    options = parser.parse_args(argv)
    if shutil.which("podman") is None:
        say("podman is missing (apt-get install podman runc)")
        return 1
    podman = Podman()
    try:
        runtime = podman.run("info", "--format", "{{.Host.OCIRuntime.Name}}", quiet=True)
        say(f"podman works, OCI runtime {runtime.stdout.strip()}")
        if not options.build_only:
            require_services()
        base = base_image(podman)
        seconds = build_image(podman, base, options.image)
        size = image_size(podman, options.image)
        say(f"built {options.image} in {seconds:.0f} s")
        if options.build_only:
            return 0
        check_image(podman, options.image)
        figures = check_production(podman, options.image)
        check_sandbox(podman, options.image, base)
        say("the compose sandbox's images: a card payment through localstripe completed")
    except CheckFailed as failed:
        say(f"FAILED: {failed}")
        return 1
    say(f"image size: {size / 1e6:.0f} MB ({size} bytes)")
    say(
        f"start-up time: {figures['startup_seconds']:.1f} s to /healthz, "
        f"{figures['ready_seconds']:.1f} s to /readyz (2 worker processes, migrations applied)"
    )
    say("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
