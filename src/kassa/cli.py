"""kassa serve | migrate — the command line.

Start-up problems (a bad setting, an unreachable database) end with one human-readable
line on stderr and exit status 2 — never a traceback.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from kassa.settings import Settings

app = typer.Typer(
    name="kassa",
    help="kassa — an open-source payment gateway service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> NoReturn:
    print(f"kassa: {message}", file=sys.stderr)
    raise typer.Exit(code=2)


def _settings() -> Settings:
    from kassa.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        _fail(str(exc))


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _migrate(database_url: str) -> None:
    from kassa.migrate import upgrade

    try:
        upgrade(database_url)
    except (OSError, ConnectionError) as exc:
        _fail(f"cannot reach the database at {_safe_url(database_url)}: {exc.strerror or exc}")
    except Exception as exc:  # the driver's many error types; show one line, not a traceback
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _fail(f"cannot migrate the database at {_safe_url(database_url)}: {reason[:200]}")


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (Alembic)."""
    settings = _settings()
    from kassa.observability.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    _migrate(settings.resolved_database_url)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    tls_certfile: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="PEM certificate chain.")
    ] = None,
    tls_keyfile: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="PEM private key.")
    ] = None,
) -> None:
    """Apply pending migrations, then serve the API (HTTPS when given TLS files)."""
    if (tls_certfile is None) != (tls_keyfile is None):
        _fail("--tls-certfile and --tls-keyfile go together")
    settings = _settings()
    from kassa.observability.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    _migrate(settings.resolved_database_url)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metrics here; /metrics in any worker sums them all.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="kassa-metrics-")
    import uvicorn

    uvicorn.run(
        "kassa.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        ssl_certfile=str(tls_certfile) if tls_certfile else None,
        ssl_keyfile=str(tls_keyfile) if tls_keyfile else None,
        proxy_headers=False,  # X-Forwarded-For is judged by KASSA_TRUSTED_PROXIES only
        server_header=False,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["app", "main"]
