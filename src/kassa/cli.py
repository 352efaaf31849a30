"""kassa serve | migrate — the command line.

Start-up problems (a bad setting, an unreachable database) end with one human-readable
line on stderr and exit status 2 — never a traceback.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from kassa.container import Container
    from kassa.settings import Settings

app = typer.Typer(
    name="kassa",
    help="kassa — an open-source payment gateway service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's own layout: rich's panels broke help lines where the source did, not where
    # the terminal ends.
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"kassa {version('kassa')}")
        raise typer.Exit


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """kassa — an open-source payment gateway service."""


def _fail(message: str) -> NoReturn:
    print(f"kassa: {message}", file=sys.stderr)
    raise typer.Exit(code=2)


def _settings() -> Settings:
    from kassa.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        _fail(str(exc))


def _configure_logging(settings: Settings, level: str | None = None) -> None:
    from kassa.observability.logging import LogFileError, configure_logging, log_file_of

    try:
        configure_logging(level or settings.log_level, settings.log_format, log_file_of(settings))
    except LogFileError as exc:
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
    _configure_logging(settings)
    _migrate(settings.resolved_database_url)


@app.command(short_help="Apply pending migrations, then serve the API.")
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
    from kassa.edge import server

    tls = tls_certfile is not None and tls_keyfile is not None
    if settings.env == "production" and not tls and not settings.trusted_proxy_networks:
        _fail(
            "production needs TLS: pass --tls-certfile and --tls-keyfile, or set "
            "KASSA_TRUSTED_PROXIES to the proxy that terminates TLS"
        )
    if tls_certfile is not None and tls_keyfile is not None:
        problem = server.check_tls_files(tls_certfile, tls_keyfile)
        if problem:
            _fail(problem)
    problem = server.check_listen(host, port)
    if problem:
        _fail(problem)
    _configure_logging(settings)
    _migrate(settings.resolved_database_url)
    _check_connection_budget(settings, workers)
    if not settings.public_url and ":" not in host:
        # The pages kassa links customers to (3-D Secure challenges) live here.
        shown = "127.0.0.1" if host == "0.0.0.0" else host  # noqa: S104
        os.environ["KASSA_PUBLIC_URL"] = f"{'https' if tls else 'http'}://{shown}:{port}"
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metrics here; /metrics in any worker sums them all.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="kassa-metrics-")
    import uvicorn

    config = uvicorn.Config(
        "kassa.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        ssl_certfile=str(tls_certfile) if tls_certfile else None,
        ssl_keyfile=str(tls_keyfile) if tls_keyfile else None,
        ssl_context_factory=server.tls_context if tls else None,  # TLS 1.2+ only
        # httptools with a capped request head: a header flood is refused, never buffered
        # whole.
        http=server.HTTP_PROTOCOL,
        # X-Forwarded-* are judged by KASSA_TRUSTED_PROXIES only; uvicorn would otherwise
        # trust them from loopback.
        proxy_headers=False,
        forwarded_allow_ips="",
        server_header=False,
        access_log=False,
        log_config=None,
        # SIGTERM closes the listening socket at once, then waits this long for in-flight
        # requests: longer than a request may spend at the processor, so none is cut short
        # and left `processing`.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
    )
    if workers > 1:
        server.DrainingMultiprocess(config, sockets=[config.bind_socket()]).run()
        return
    instance = uvicorn.Server(config)
    instance.run()
    if not instance.started:
        raise typer.Exit(code=3)  # uvicorn's start-up failure status; it logged why


# Beside the serving workers: `kassa migrate`, `kassa reconcile`, `kassa ledger verify` or an
# operator's psql, one at a time.
TOOL_CONNECTIONS = 1


def connections_needed(workers: int, pool_size: int) -> int:
    """PostgreSQL connections one host running `kassa serve --workers N` and one
    `kassa worker` may hold at once, each process at its full pool, plus one for tools."""
    return workers * pool_size + pool_size + TOOL_CONNECTIONS


def _check_connection_budget(settings: Settings, workers: int) -> None:
    """Refuse to start when the pools could exhaust the server's connections: past
    `max_connections` a new connection fails with "too many clients", mid-traffic."""
    from kassa.db import connection_budget

    url = settings.resolved_database_url
    try:
        budget = asyncio.run(connection_budget(url))
    except Exception as exc:  # the driver's many error types; the migration just worked
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _fail(f"cannot read max_connections at {_safe_url(url)}: {reason[:200]}")
    if budget is None:
        return
    pool = settings.database_pool_size
    needed = connections_needed(workers, pool)
    if needed > budget.available:
        _fail(
            f"--workers {workers} × KASSA_DATABASE_POOL_SIZE {pool} = {workers * pool} "
            f"connections, + {pool} for a kassa worker + {TOOL_CONNECTIONS} for tools = {needed}, "
            f"exceed the {budget.available} the database allows (max_connections "
            f"{budget.max_connections} less {budget.reserved} reserved); lower "
            "KASSA_DATABASE_POOL_SIZE or --workers, or raise max_connections"
        )


def _progress(label: str) -> Callable[[int, int], None]:
    """Progress on stderr, at most once a second and at the end: stdout stays for results."""
    last = 0.0

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done == total or now - last >= 1.0:
            last = now
            width = 30
            filled = width * done // total if total else width
            bar = "#" * filled + "-" * (width - filled)
            print(f"{label} [{bar}] {done}/{total}", file=sys.stderr, flush=True)

    return report


def _with_container(settings: Settings, work: Callable[[Container], Awaitable[int]]) -> int:
    from kassa.container import build_container

    async def run() -> int:
        container = build_container(settings)
        try:
            return await work(container)
        finally:
            await container.aclose()

    return asyncio.run(run())


@app.command(short_help="Settle payments and refunds left unsettled.")
def reconcile(
    older_than: Annotated[
        float, typer.Option(min=0, help="Only payments and refunds unsettled this many seconds.")
    ] = 60.0,
) -> None:
    """Settle payments left `processing` and refunds left `pending` (a crash, a lost answer),
    asking the processor under the same references, so nothing is charged twice."""
    settings = _settings()
    _configure_logging(settings, "WARNING")
    _migrate(settings.resolved_database_url)

    async def work(container: Container) -> int:
        window = timedelta(seconds=older_than)
        payments = await container.payments.reconcile(
            older_than=window, progress=_progress("reconcile payments")
        )
        refunds = await container.refunds.reconcile(older_than=window)
        print(
            f"payments: {payments.examined} examined, {payments.settled} settled, "
            f"{payments.unresolved} unresolved, {payments.resumed} resumed after "
            f"authentication; refunds: {refunds.examined} examined, "
            f"{refunds.settled} settled, {refunds.unresolved} unresolved"
        )
        return 1 if payments.unresolved or refunds.unresolved else 0

    raise typer.Exit(code=_with_container(settings, work))


vault_app = typer.Typer(help="The card vault.", no_args_is_help=True)
app.add_typer(vault_app, name="vault")


@vault_app.command("rotate", short_help="Re-seal vault entries under the first key.")
def vault_rotate(
    batch_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="Rows re-sealed per transaction.")
    ] = 500,
) -> None:
    """Re-seal vaulted card data and webhook signing secrets under KASSA_VAULT_KEYS first key.

    Put the new key first and keep the old ones after it; run this (safe to interrupt and
    run again: it resumes with what is left); drop the old keys once it reports none left.
    Progress goes to stderr; exit 1 when some entry could not be opened."""
    settings = _settings()
    _configure_logging(settings, "WARNING")
    _migrate(settings.resolved_database_url)

    async def work(container: Container) -> int:
        report = await container.vault_rotator.rotate(
            batch_size=batch_size, progress=_progress("vault rotate")
        )
        kid = container.payments.vault_primary_kid
        print(
            f"vault rotate: {report.resealed} re-sealed with key {kid!r}, "
            f"{report.unreadable} could not be opened"
        )
        return 1 if report.unreadable else 0

    raise typer.Exit(code=_with_container(settings, work))


ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("verify", short_help="Check that the books balance and match the processor.")
def ledger_verify(
    batch_size: Annotated[
        int, typer.Option(min=100, max=1_000_000, help="Payments checked per statement.")
    ] = 20_000,
) -> None:
    """Check the books in one consistent snapshot: every posting sums to zero per currency;
    the ledger agrees with every payment and refund; with the simulator, every charged
    payment has exactly one processor charge and every posted refund exactly one processor
    refund. Safe to run on a live system (read-only; it blocks no writer). Progress goes to
    stderr; exit 1 with the first mismatches, 2 when the database could not be read."""
    settings = _settings()
    _configure_logging(settings, "WARNING")
    _migrate(settings.resolved_database_url)

    async def work(container: Container) -> int:
        from kassa.audit.service import BooksAuditor

        auditor = BooksAuditor(
            container.db,
            processor_records=settings.processor == "simulator",
            progress=_progress("ledger verify"),
            batch_size=batch_size,
        )
        from sqlalchemy.exc import SQLAlchemyError

        started = time.monotonic()
        try:
            report = await auditor.verify()
        except (SQLAlchemyError, OSError) as exc:
            # Not a verdict on the books: the database went away mid-check. Say so in one
            # line and exit 2, as for any start-up problem, so callers can tell it from 1.
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"kassa: ledger verify could not finish: {reason[:200]}", file=sys.stderr)
            return 2
        seconds = time.monotonic() - started
        for mismatch in report.mismatches:
            print(f"MISMATCH {mismatch}")
        verdict = "OK" if report.ok else "FAILED"
        if report.processor_charges is None:
            processor = "processor records skipped (Stripe keeps them: see its balance report)"
        else:
            processor = (
                f"{report.processor_charges} processor charges and "
                f"{report.processor_refunds} processor refunds checked"
            )
        print(
            f"ledger {verdict}: {report.postings} postings, {report.payments} payments "
            f"checked; {processor}; in {seconds:.2f} s"
        )
        return 0 if report.ok else 1

    raise typer.Exit(code=_with_container(settings, work))


@app.command(short_help="Deliver webhooks and run background jobs.")
def worker(
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between two rounds of jobs.")
    ] = 10.0,
    older_than: Annotated[
        float, typer.Option(min=0, help="Reconcile what has been unsettled this long.")
    ] = 60.0,
    once: Annotated[bool, typer.Option(help="Run one round, then exit.")] = False,
) -> None:
    """The background worker: webhook delivery (polled continuously), and reconciliation and
    expired idempotency keys every interval. Any number may run at once, on any hosts."""
    settings = _settings()
    _configure_logging(settings)
    _migrate(settings.resolved_database_url)

    async def work(container: Container) -> int:
        from kassa.observability.tracing import setup_tracing
        from kassa.worker import Worker

        # Processor calls and webhook deliveries (when OTEL_EXPORTER_OTLP_ENDPOINT is set);
        # not every statement, or the delivery poll would make a trace every half second.
        tracing = setup_tracing()
        runner = Worker(container, interval=interval, older_than=timedelta(seconds=older_than))
        try:
            await runner.run(once=once)
        finally:
            if tracing is not None:
                tracing.shutdown()
        return 0

    raise typer.Exit(code=_with_container(settings, work))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["app", "main"]
