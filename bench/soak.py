"""The soak: exactly once across crashes, for minutes, on a PostgreSQL of its own.

    .venv/bin/python -m bench.soak                  # 10 minutes
    .venv/bin/python -m bench.soak --minutes 2.5    # shorter

1. A private PostgreSQL cluster is created (initdb in a temporary directory, on a free port,
   run as the `postgres` OS user when started as root); nothing else is touched.
2. Two `kassa serve` processes (think: two hosts) share it, with a `kassa worker`
   reconciling in the background.
3. Clients run payment lifecycles — create, process, refund part, refund the rest — each
   request under its own Idempotency-Key, retried with the same key on the other server
   whenever it gets no answer, a 5xx, a 429 or `idempotency_key_in_use`.
4. Meanwhile one server is killed with SIGKILL every `--kill-every` seconds and started
   again, PostgreSQL is restarted once (an immediate shutdown: crash recovery) half-way
   through, and `kassa ledger verify` runs every `--verify-every` seconds.
5. Afterwards: `kassa reconcile` settles what the crashes left, `kassa ledger verify` runs
   once more, and the database is checked: for every key exactly one effect (one payment
   per create key, one refund per refund key), every completed payment exactly one
   simulator charge, every refund exactly one processor refund, and every answer a retried
   request got agrees with what its first attempt did.

Progress goes to stderr every few seconds; the figures are printed as a table at the end
(and written as JSON with --json). Exit status 1 when a check fails. Not part of
`make test` (it runs for minutes and starts its own database server).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.run import free_port

BIN = Path(sys.executable).parent
PASSWORD = "soak password 1"
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2035, "cvc": "123"}
DECLINED = {**CARD, "number": "4000000000000002"}
REQUEST_GIVE_UP_SECONDS = 120.0
RNG = secrets.SystemRandom()


def say(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- a private PostgreSQL ---------------------------------------------------------------


class PrivatePostgres:
    """A throw-away PostgreSQL cluster in a temporary directory, on a free port."""

    def __init__(self, root: Path) -> None:
        self.bin = self._bindir()
        self.data = root / "pgdata"
        self.port = free_port()
        self.log = root / "postgres.log"
        self._as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        root.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            import pwd

            account = pwd.getpwnam("postgres")
            os.chown(root, account.pw_uid, account.pw_gid)
        root.chmod(0o700)

    @staticmethod
    def _bindir() -> Path:
        found = shutil.which("pg_ctl")
        if found:
            return Path(found).resolve().parent
        for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            if (candidate / "pg_ctl").exists():
                return candidate
        raise SystemExit("soak: PostgreSQL's initdb and pg_ctl are needed (postgresql package)")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        return subprocess.run(
            [*prefix, *args], capture_output=True, text=True, check=check, timeout=120
        )

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        )
        options = (
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 "
            "-c max_connections=100 -c fsync=on"
        )
        (self.data / "soak.options").write_text(options)
        self.start()

    def start(self) -> None:
        options = (self.data / "soak.options").read_text()
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.log),
            "-w",
            "start",
        )

    def restart(self) -> None:
        """Stop at once, as a crash would (crash recovery at start), then start again."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        self.start()

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop", check=False)


# --- kassa processes ----------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    env: dict[str, str]
    work: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    workers: int = 1

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = self.work / f"{self.name}.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    str(BIN / "kassa"),
                    "serve",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                ],
                cwd=self.work,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start; see {self.work / (self.name + '.log')}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL: no drain, no clean-up
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def kassa_env(url: str) -> dict[str, str]:
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update(
        {
            "KASSA_DATABASE_URL": url,
            "KASSA_JWT_SECRET": secrets.token_urlsafe(48),
            "KASSA_VAULT_KEYS": f"soak:{key}",
            "KASSA_RATE_LIMIT": "10000000/minute",
            "KASSA_USER_RATE_LIMIT": "10000000/minute",
            "KASSA_ACCESS_TOKEN_TTL_SECONDS": "86400",
            # A network's latency at the processor: crashes land mid-call as often as not.
            "KASSA_SIMULATOR_DELAY_MS": "40",
            "KASSA_LOG_LEVEL": "WARNING",
        }
    )
    return env


def start_worker(env: dict[str, str], work: Path) -> subprocess.Popen[bytes]:
    """A `kassa worker` reconciling what the crashes leave, as in production."""
    with (work / "worker.log").open("ab") as out:
        return subprocess.Popen(
            [str(BIN / "kassa"), "worker", "--interval", "5", "--older-than", "20"],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def kassa(env: dict[str, str], work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kassa"), *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


# --- clients ------------------------------------------------------------------------------


def new_key() -> str:
    # Letters only: the key doubles as a refund's reason, where digit runs are refused.
    return "".join(RNG.choices(string.ascii_lowercase, k=24))


@dataclass
class Answer:
    kind: str  # create | process | refund_part | refund_rest
    key: str
    payment_id: str | None
    status: int | None  # None: gave up
    code: str | None
    state: str | None  # the payment's or refund's status in the answer
    attempts: int


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    lifecycles: int = 0
    requests: int = 0
    retries: int = 0
    transport_errors: int = 0
    server_errors: int = 0
    keys_in_use: int = 0
    gave_up: int = 0
    answers: list[Answer] = field(default_factory=list)
    completions: list[float] = field(default_factory=list)  # when each lifecycle ended
    kills: int = 0
    pg_restarts: int = 0
    verify_runs: list[dict[str, Any]] = field(default_factory=list)


class Client:
    def __init__(self, index: int, servers: list[Server], stats: Stats) -> None:
        self.index = index
        self.servers = servers
        self.stats = stats
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=2.0))
        self.headers: dict[str, str] = {}

    async def login(self) -> None:
        email = f"soak-{self.index}-{secrets.token_hex(4)}@example.com"
        body = {"name": "Soak", "email": email, "password": PASSWORD}
        await self._plain("POST", "/api/auth/register", body)
        answer = await self._plain(
            "POST", "/api/auth/login", {"email": email, "password": PASSWORD}
        )
        self.headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}

    async def _plain(self, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        for attempt in range(200):
            server = self.servers[(self.index + attempt) % len(self.servers)]
            with contextlib.suppress(httpx.TransportError):
                response = await self.http.request(method, server.base + path, json=body)
                if response.status_code < 500:
                    return response
            await asyncio.sleep(0.3)
        raise RuntimeError(f"{path}: no server answered")

    async def send(
        self, kind: str, path: str, body: dict[str, Any], payment_id: str | None
    ) -> Answer:
        """One request under one Idempotency-Key, retried with that key (alternating
        servers) until it gets an answer that is not a 5xx, a 429 or key-in-use."""
        key = new_key()
        if kind.startswith("refund"):
            body = {**body, "reason": f"soak {key}"}
        if kind == "create":
            body = {**body, "metadata": {"soak_key": key}}
        deadline = time.monotonic() + REQUEST_GIVE_UP_SECONDS
        attempt = 0
        while time.monotonic() < deadline:
            server = self.servers[(self.index + attempt) % len(self.servers)]
            attempt += 1
            self.stats.requests += 1
            if attempt > 1:
                self.stats.retries += 1
            try:
                response = await self.http.post(
                    server.base + path,
                    json=body,
                    headers={**self.headers, "Idempotency-Key": key},
                )
            except httpx.TransportError:
                self.stats.transport_errors += 1
                await asyncio.sleep(RNG.uniform(0.1, 0.4))
                continue
            code = None
            if response.headers.get("content-type", "").startswith("application/problem+json"):
                code = response.json().get("code")
            if response.status_code >= 500 or response.status_code == 429:
                self.stats.server_errors += 1
                await asyncio.sleep(RNG.uniform(0.2, 0.6))
                continue
            if code == "idempotency_key_in_use":
                self.stats.keys_in_use += 1
                await asyncio.sleep(RNG.uniform(0.5, 1.5))
                continue
            data = response.json()
            state = data.get("status") if isinstance(data.get("status"), str) else None
            if kind == "create" and response.status_code == 201:
                payment_id = data["id"]
            answer = Answer(kind, key, payment_id, response.status_code, code, state, attempt)
            self.stats.answers.append(answer)
            return answer
        self.stats.gave_up += 1
        answer = Answer(kind, key, payment_id, None, None, None, attempt)
        self.stats.answers.append(answer)
        return answer

    async def lifecycle(self) -> None:
        amount = RNG.randint(1000, 10000)
        details = DECLINED if RNG.random() < 0.1 else CARD
        body = {
            "amount": amount,
            "currency": "USD",
            "payment_method": "credit_card",
            "details": details,
        }
        created = await self.send("create", "/api/payments", body, None)
        if created.status != 201 or created.payment_id is None:
            return
        pid = created.payment_id
        processed = await self.send("process", "/api/payments/process", {"payment_id": pid}, pid)
        if processed.state == "completed":
            part = max(1, amount * 3 // 10)
            await self.send("refund_part", f"/api/payments/{pid}/refund", {"amount": part}, pid)
            await self.send("refund_rest", f"/api/payments/{pid}/refund", {}, pid)
        self.stats.lifecycles += 1
        self.stats.completions.append(time.monotonic())

    async def run(self, until: float) -> None:
        while time.monotonic() < until:
            await self.lifecycle()

    async def aclose(self) -> None:
        await self.http.aclose()


# --- chaos and checks while the load runs --------------------------------------------------


async def chaos(
    servers: list[Server], pg: PrivatePostgres, stats: Stats, until: float, kill_every: float
) -> None:
    restart_pg_at = stats.started + (until - stats.started) / 2
    victim = 0
    next_kill = time.monotonic() + kill_every
    while time.monotonic() < until:
        await asyncio.sleep(0.5)
        now = time.monotonic()
        if stats.pg_restarts == 0 and now >= restart_pg_at:
            say("restarting PostgreSQL (immediate stop: crash recovery)")
            await asyncio.to_thread(pg.restart)
            stats.pg_restarts += 1
        if now >= next_kill:
            server = servers[victim % len(servers)]
            victim += 1
            say(f"kill -9 {server.name} (pid {server.process.pid if server.process else '?'})")
            server.kill()
            stats.kills += 1
            await asyncio.sleep(1.0)
            server.start()
            await server.ready()
            next_kill = time.monotonic() + kill_every


async def verifier(
    env: dict[str, str], work: Path, stats: Stats, until: float, every: float
) -> None:
    while time.monotonic() + every < until:
        await asyncio.sleep(every)
        started = time.monotonic()
        done = await asyncio.to_thread(kassa, env, work, "ledger", "verify")
        ended = time.monotonic()
        mismatches = [line for line in done.stdout.splitlines() if line.startswith("MISMATCH")]
        # FAILED is a verdict on the books (mismatches listed); ERROR is a verify that could
        # not finish (the database restarting under it).
        verdict = "OK" if done.returncode == 0 else "FAILED" if mismatches else "ERROR"
        run = {
            "started": started,
            "ended": ended,
            "seconds": round(ended - started, 2),
            "verdict": verdict,
            "summary": (done.stdout.strip().splitlines() or [done.stderr.strip()[-200:]])[-1],
            "mismatches": mismatches,
        }
        stats.verify_runs.append(run)
        say(f"ledger verify while loaded: {verdict} in {run['seconds']} s")


async def progress(stats: Stats, until: float) -> None:
    while time.monotonic() < until:
        await asyncio.sleep(10)
        elapsed = time.monotonic() - stats.started
        say(
            f"{elapsed:5.0f} s: {stats.lifecycles} lifecycles, {stats.requests} requests, "
            f"{stats.retries} retries, {stats.kills} kills, {stats.pg_restarts} PostgreSQL "
            f"restarts, {len(stats.verify_runs)} verifies"
        )


# --- the final checks ---------------------------------------------------------------------


async def database_checks(dsn: str, stats: Stats) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        payments = dict(
            await conn.fetch("SELECT status, count(*) FROM payment GROUP BY status ORDER BY 1")
        )
        refunds = dict(
            await conn.fetch("SELECT status, count(*) FROM refund GROUP BY status ORDER BY 1")
        )
        per_create_key = {
            row["key"]: row["n"]
            for row in await conn.fetch(
                "SELECT metadata::jsonb->>'soak_key' AS key, count(*) AS n FROM payment GROUP BY 1"
            )
        }
        per_refund_key = {
            row["key"]: (row["n"], row["payment_id"])
            for row in await conn.fetch(
                "SELECT substr(reason, 6) AS key, count(*) AS n, min(payment_id::text) "
                "AS payment_id FROM refund WHERE reason LIKE 'soak %' GROUP BY 1"
            )
        }
        charges_per_payment = await conn.fetch(
            "SELECT p.id, p.status, count(s.reference) FILTER (WHERE s.outcome = 'succeeded') "
            "AS charges FROM payment p LEFT JOIN simulator_charge s ON s.reference = "
            "'kassa_charge_' || replace(p.id::text, '-', '') GROUP BY p.id, p.status"
        )
        refunds_at_processor = await conn.fetch(
            "SELECT r.id, r.status, count(s.reference) FILTER (WHERE s.outcome = 'succeeded') "
            "AS at_processor FROM refund r LEFT JOIN simulator_refund s ON s.reference = "
            "'kassa_refund_' || replace(r.id::text, '-', '') GROUP BY r.id, r.status"
        )
        processor_refunds_of_no_refund = await conn.fetchval(
            "SELECT count(*) FROM simulator_refund s WHERE s.outcome = 'succeeded' AND NOT "
            "EXISTS (SELECT 1 FROM refund r WHERE s.reference = 'kassa_refund_' || "
            "replace(r.id::text, '-', ''))"
        )
        by_payment = {
            str(row["id"]): row["status"]
            for row in await conn.fetch("SELECT id, status FROM payment")
        }
        refund_status = {
            row["key"]: row["statuses"]
            for row in await conn.fetch(
                "SELECT substr(reason, 6) AS key, array_agg(status) AS statuses FROM refund "
                "WHERE reason LIKE 'soak %' GROUP BY 1"
            )
        }
    finally:
        await conn.close()

    charged = {"completed", "partially_refunded", "refunded"}
    create_answers = [a for a in stats.answers if a.kind == "create"]
    refund_answers = [a for a in stats.answers if a.kind.startswith("refund")]
    process_answers = [a for a in stats.answers if a.kind == "process"]
    wrong_process = [
        a
        for a in process_answers
        if a.status == 409 and by_payment.get(a.payment_id or "") in charged | {"failed"}
    ]
    wrong_refund = [
        a
        for a in refund_answers
        if a.status is not None and a.status >= 400 and refund_status.get(a.key)
    ]
    return {
        "payments": payments,
        "refunds": refunds,
        "create keys answered 201": sum(1 for a in create_answers if a.status == 201),
        "create keys with 2+ payments": sum(1 for n in per_create_key.values() if n > 1),
        "refund keys answered 201": sum(1 for a in refund_answers if a.status == 201),
        "refund keys with 2+ refunds": sum(1 for n, _ in per_refund_key.values() if n > 1),
        "payments with a double refund": sorted(
            {pid for n, pid in per_refund_key.values() if n > 1}
        )[:10],
        "charged payments without exactly 1 charge": sum(
            1 for r in charges_per_payment if r["status"] in charged and r["charges"] != 1
        ),
        "uncharged payments with a charge": sum(
            1
            for r in charges_per_payment
            if r["status"] in {"pending", "failed", "canceled"} and r["charges"] > 0
        ),
        "succeeded refunds without exactly 1 processor refund": sum(
            1 for r in refunds_at_processor if r["status"] == "succeeded" and r["at_processor"] != 1
        ),
        "processor refunds of no refund": int(processor_refunds_of_no_refund or 0),
        "process keys answered 409 though charged/failed": len(wrong_process),
        "refund keys answered 4xx though their refund exists": len(wrong_refund),
        "requests given up": stats.gave_up,
    }


def throughput_beside_verify(stats: Stats) -> dict[str, float | None]:
    """Lifecycles per second while a verify ran, and while none did (the verify's cost)."""
    runs = [(r["started"], r["ended"]) for r in stats.verify_runs]
    inside = sum(1 for t in stats.completions if any(a <= t <= b for a, b in runs))
    during = sum(b - a for a, b in runs)
    total = (stats.completions[-1] - stats.started) if stats.completions else 0.0
    outside_time = total - during
    return {
        "lifecycles/s while verify ran": round(inside / during, 2) if during else None,
        "lifecycles/s otherwise": round((len(stats.completions) - inside) / outside_time, 2)
        if outside_time > 0
        else None,
    }


def _checking_seconds(summary: str) -> float:
    found = re.search(r"in ([0-9.]+) s$", summary)
    return float(found.group(1)) if found else float("nan")


def print_table(figures: dict[str, Any]) -> None:
    width = max(len(name) for name in figures)
    print("\nsoak figures")
    print("-" * (width + 30))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")


# --- main -----------------------------------------------------------------------------------


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="kassa-soak-"))
    root.chmod(0o711)  # the cluster's directory inside belongs to the postgres user
    try:
        yield root
    finally:
        if keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


async def soak(args: argparse.Namespace, root: Path) -> int:
    work = root / "kassa"
    work.mkdir()
    pg = PrivatePostgres(root / "pg")
    say(f"private PostgreSQL on port {pg.port}")
    pg.init()
    servers: list[Server] = []
    background: subprocess.Popen[bytes] | None = None
    try:
        admin = await asyncpg.connect(pg.admin_dsn)
        await admin.execute("CREATE DATABASE kassa")
        await admin.close()
        env = kassa_env(pg.url("kassa"))
        migrated = kassa(env, work, "migrate")
        if migrated.returncode != 0:
            raise RuntimeError(f"kassa migrate failed: {migrated.stderr}")
        servers = [Server(f"server-{i}", free_port(), env, work) for i in range(2)]
        for server in servers:
            server.start()
        for server in servers:
            await server.ready()
        background = start_worker(env, work)
        stats = Stats()
        clients = [Client(i, servers, stats) for i in range(args.clients)]
        await asyncio.gather(*(client.login() for client in clients))
        stats.started = time.monotonic()
        until = stats.started + args.minutes * 60
        say(
            f"load: {args.clients} clients for {args.minutes:g} min on {len(servers)} servers; "
            f"kill -9 every {args.kill_every:g} s; PostgreSQL restarted once"
        )
        await asyncio.gather(
            *(client.run(until) for client in clients),
            chaos(servers, pg, stats, until, args.kill_every),
            verifier(env, work, stats, until, args.verify_every),
            progress(stats, until),
        )
        loaded_seconds = time.monotonic() - stats.started
        for client in clients:
            await client.aclose()
        if background is not None:
            background.send_signal(signal.SIGTERM)
            background.wait(timeout=60)
        say("load stopped; kassa reconcile")
        reconciled = ""
        for _ in range(5):
            done = kassa(env, work, "reconcile", "--older-than", "0")
            reconciled = done.stdout.strip()
            if done.returncode == 0:
                break
            await asyncio.sleep(2)
        say(f"reconcile: {reconciled}")
        final = kassa(env, work, "ledger", "verify")
        say(f"ledger verify afterwards: {final.stdout.strip().splitlines()[-1:]}")
        checks = await database_checks(pg.dsn("kassa"), stats)
        answers = Counter(
            f"{a.kind} {a.status}{' ' + a.code if a.code else ''}" for a in stats.answers
        )
        during = stats.verify_runs
        figures: dict[str, Any] = {
            "minutes under load": round(loaded_seconds / 60, 2),
            "clients": args.clients,
            "lifecycles": stats.lifecycles,
            "lifecycles/s": round(stats.lifecycles / loaded_seconds, 2),
            "requests sent (with retries)": stats.requests,
            "retries": stats.retries,
            "no answer (connection lost/refused)": stats.transport_errors,
            "5xx or 429 answers": stats.server_errors,
            "idempotency_key_in_use answers": stats.keys_in_use,
            "servers killed -9": stats.kills,
            "PostgreSQL restarts": stats.pg_restarts,
            "verify runs under load (OK/FAILED/ERROR)": "/".join(
                str(sum(1 for r in during if r["verdict"] == v)) for v in ("OK", "FAILED", "ERROR")
            ),
            "verify seconds under load, process start included (max)": max(
                (r["seconds"] for r in during), default=None
            ),
            "verify seconds under load, checking only (max)": max(
                (_checking_seconds(r["summary"]) for r in during), default=None
            ),
            **throughput_beside_verify(stats),
            "reconcile afterwards": reconciled,
            "ledger verify afterwards": (final.stdout.strip().splitlines() or ["?"])[-1],
            **checks,
            "final answers": dict(sorted(answers.items())),
        }
        failed_verifies = [r for r in during if r["verdict"] == "FAILED"]
        if failed_verifies:
            figures["first mismatches under load"] = failed_verifies[0]["mismatches"][:5]
        final_mismatches = [x for x in final.stdout.splitlines() if x.startswith("MIS")]
        if final_mismatches:
            figures["mismatches afterwards"] = final_mismatches[:10]
        print_table(figures)
        if args.json:
            await asyncio.to_thread(
                Path(args.json).write_text, json.dumps(figures, indent=2, default=str)
            )
        problems = [
            final.returncode != 0,
            bool(failed_verifies),
            checks["create keys with 2+ payments"] > 0,
            checks["refund keys with 2+ refunds"] > 0,
            checks["charged payments without exactly 1 charge"] > 0,
            checks["uncharged payments with a charge"] > 0,
            checks["succeeded refunds without exactly 1 processor refund"] > 0,
            checks["processor refunds of no refund"] > 0,
            checks["process keys answered 409 though charged/failed"] > 0,
            checks["refund keys answered 4xx though their refund exists"] > 0,
        ]
        return 1 if any(problems) else 0
    finally:
        if background is not None and background.poll() is None:
            background.kill()
        for server in servers:
            server.stop()
        pg.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="time under load (10)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--kill-every", type=float, default=30.0, help="seconds between kills")
    parser.add_argument("--verify-every", type=float, default=20.0, help="seconds between verifies")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the logs and the cluster dir")
    args = parser.parse_args(argv)
    with workspace(args.keep) as root:
        return asyncio.run(soak(args, root))


if __name__ == "__main__":
    sys.exit(main())
