"""kassa's benchmark: the full lifecycle over real HTTP against kassa on PostgreSQL and Redis,
beside an independent lean reference with the same guarantees, on the same machine.

    make bench                      # or: .venv/bin/python -m bench.run --help
    make bench BENCH_ARGS="--duration 10 --rounds 1 --skip-scale-out"   # a quicker look

1. Databases: kassa's (migrated) and the reference's (bench/reference/schema.sql), each
   made for this run and dropped after it. kassa's own SQL is captured in-process
   (bench/sqlplan.py) for the floor and pgbench.
2. Round trips: each app, one worker, wired to PostgreSQL and Redis through counting
   proxies (bench/wirecount.py); one lifecycle at a time, each request's round trips,
   statements and Redis commands counted on the wire.
3. Closed loop: `kassa serve --workers N` (Redis rate limits, every feature on) and the
   reference (uvicorn, N workers) run side by side; wrk (bench/lifecycle.lua) drives them in
   turn — kassa, reference, kassa, reference — at each client count, for `--rounds` rounds.
   Server CPU per lifecycle is read from /proc for each server's workers.
4. Open loop: lifecycles due at 25 %, 50 % and 75 % of kassa's best closed-loop rate
   (bench/openloop.py), kassa then the reference at each rate: p50/p99/p99.9.
5. Checks: `kassa ledger verify`, every kassa payment in the state its requests imply, one
   simulator charge per completed payment; the reference's books, states and network
   records likewise (bench/reference/checks.py).
6. The floor (kassa's captured SQL replayed by a bare app: what kassa's Python costs) and
   pgbench of each design's SQL (the database's ceiling for each).
7. Scale-out: two kassa hosts on one PostgreSQL and one Redis, load on both, then
   cross-host races (process and full refund) that must each succeed exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from bench import openloop, wirecount
from bench.inproc import kassa_environment
from bench.reference import checks as reference_checks
from bench.reference import sql as reference_sql
from bench.report import (
    LoadResult,
    compare,
    comparison_lines,
    kassa_maximum,
    load_table,
    open_loop_rates,
    open_loop_table,
    per_lifecycle,
    round_trip_table,
)
from bench.sqlplan import PARTS, capture_plan, pgbench_script

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = "bench password 1"
PAYMENT = {
    "amount": 2500,
    "currency": "USD",
    "payment_method": "credit_card",
    "details": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2035, "cvc": "123"},
}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine_cpu_seconds() -> float:
    """CPU time the whole machine has been busy (every core, every process)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- databases and processes --------------------------------------------------------------


class Postgres:
    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.created: list[str] = []

    async def _admin(self, sql: str) -> None:
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    def create(self, name: str, template: str | None = None) -> None:
        suffix = f' TEMPLATE "{template}"' if template else ""
        asyncio.run(self._admin(f'CREATE DATABASE "{name}"{suffix}'))
        self.created.append(name)

    def drop_all(self) -> None:
        for name in self.created:
            with contextlib.suppress(Exception):
                asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def dsn(self, name: str) -> str:
        return self.admin_dsn.rsplit("/", 1)[0] + f"/{name}"

    def url(self, name: str) -> str:
        return self.dsn(name).replace("postgresql://", "postgresql+asyncpg://", 1)

    def fetch(self, name: str, sql: str) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            connection = await asyncpg.connect(self.dsn(name))
            try:
                return list(await connection.fetch(sql))
            finally:
                await connection.close()

        return asyncio.run(run())


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str = "/healthz", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} exited during start-up:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + path, timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {path} within {timeout} s")

    def worker_pids(self) -> list[int]:
        """The serving processes: the workers uvicorn forked, or the server itself."""
        found: list[int] = []
        pending = [self.process.pid]
        while pending:
            pid = pending.pop()
            children = Path(f"/proc/{pid}/task/{pid}/children")
            kids = [int(p) for p in children.read_text().split()] if children.exists() else []
            pending.extend(kids)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"spawn_main" in cmdline or (pid == self.process.pid and not kids):
                found.append(pid)
        return found

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.worker_pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> list[float]:
        peaks = []
        for pid in self.worker_pids():
            status = Path(f"/proc/{pid}/status").read_text()
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            if match:
                peaks.append(int(match.group(1)) / 1024)
        return peaks

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def kassa_env(url: str, redis_url: str, prefix: str, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    # Users are registered through the API at the production password cost (`seed_users`).
    env.update(kassa_environment(url, redis_url, prefix, cheap_passwords=False))
    (work / "env.json").write_text(
        json.dumps({k: v for k, v in env.items() if k.startswith("KASSA_")})
    )
    return env


def start_kassa(name: str, env: dict[str, str], work: Path, workers: int) -> Server:
    port = free_port()
    log = work / f"{name}.log"
    command = [str(BIN / "kassa"), "serve", "--port", str(port), "--workers", str(workers)]
    with log.open("ab") as out:  # a server restarted per run appends
        process = subprocess.Popen(command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(name, process, port, log)
    server.wait_ready("/readyz")
    return server


def start_floor(plan_path: Path, dsn: str, work: Path, workers: int) -> Server:
    port = free_port()
    log = work / "floor.log"
    env = {**os.environ, "BENCH_PLAN": str(plan_path), "BENCH_DSN": dsn}
    command = [
        str(BIN / "uvicorn"),
        "bench.floor:app",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with log.open("ab") as out:  # a server restarted per run appends
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server("floor", process, port, log)
    server.wait_ready("/docs")
    return server


# --- users and load -----------------------------------------------------------------------


async def _seed(base: str, count: int, tag: str) -> list[str]:
    limit = asyncio.Semaphore(4)  # Argon2id is meant to be slow; don't starve the server

    async def one(client: httpx.AsyncClient, index: int) -> str:
        email = f"bench-{tag}-{index}@example.com"
        async with limit:
            created = await client.post(
                "/api/auth/register",
                json={"name": f"bench {index}", "email": email, "password": PASSWORD},
            )
            if created.status_code != 201:
                raise RuntimeError(f"register answered {created.status_code}: {created.text[:200]}")
            login = await client.post(
                "/api/auth/login", json={"email": email, "password": PASSWORD}
            )
            if login.status_code != 200:
                raise RuntimeError(f"login answered {login.status_code}: {login.text[:200]}")
            return str(login.json()["access_token"])

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        return list(await asyncio.gather(*(one(client, i) for i in range(count))))


def seed_users(server: Server, count: int, work: Path, tag: str) -> Path:
    say(f"registering and logging in {count} users on {server.name} (Argon2id, 4 at a time)")
    started = time.monotonic()
    tokens = asyncio.run(_seed(server.base, count, tag))
    path = work / f"tokens-{tag}.txt"
    path.write_text("\n".join(tokens) + "\n")
    say(f"  {count} users ready in {time.monotonic() - started:.1f} s")
    return path


def run_wrk(
    target: str,
    base: str,
    clients: int,
    seconds: int,
    tokens: Path,
    server: Server | None = None,
) -> LoadResult:
    env = {**os.environ, "BENCH_TOKENS": str(tokens), "BENCH_NONCE": uuid.uuid4().hex[:12]}
    command = [
        "wrk",
        "-t",
        str(clients),
        "-c",
        str(clients),
        "-d",
        f"{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(ROOT / "bench" / "lifecycle.lua"),
        base,
    ]
    say(f"  wrk {target}: {clients} clients for {seconds} s …")
    machine_before = machine_cpu_seconds()
    server_before = server.cpu_seconds() if server else 0.0
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    machine_cpu = machine_cpu_seconds() - machine_before
    server_cpu = (server.cpu_seconds() - server_before) if server else 0.0
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({done.returncode}): {done.stdout[-1500:]} {done.stderr[-1500:]}"
        )
    data = json.loads(line.removeprefix("BENCH_RESULT "))
    result = LoadResult(
        target=target,
        clients=clients,
        seconds=data["duration_us"] / 1e6,
        requests=data["requests"],
        lifecycles=data["lifecycles"],
        refunds=data["refunds"],
        statuses=data["statuses"],
        errors=data["unexpected"] + data["socket_errors"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        p999_ms=data["p999_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        notes=list(data["last_bad"]),
        machine_cpu_ms=1000 * machine_cpu / max(1, data["lifecycles"]),
        server_cpu_ms=1000 * server_cpu / max(1, data["lifecycles"]),
    )
    say(
        f"    {result.lifecycles_per_s:.1f} lifecycles/s, {result.requests_per_s:.1f} req/s, "
        f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, errors {result.errors}; "
        f"CPU per lifecycle: server {result.server_cpu_ms:.1f} ms, "
        f"machine {result.machine_cpu_ms:.1f} ms"
    )
    return result


def run_pgbench(
    pg: Postgres,
    database: str,
    scripts: dict[str, Path],
    clients: int,
    seconds: int,
    work: Path,
    target: str = "pgbench",
    defines: dict[str, str] | None = None,
) -> LoadResult:
    logs = work / f"{target.replace(' ', '-')}-{clients}"
    logs.mkdir(exist_ok=True)
    host_dsn = pg.dsn(database)
    command = [
        "pgbench",
        "-n",
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        "2",
        "-T",
        str(seconds),
        "-l",
        "--log-prefix",
        str(logs / "log"),
        "-f",
        f"{scripts['plain']}@2",
        "-f",
        f"{scripts['status']}@1",
        "-f",
        f"{scripts['refund']}@1",
        *[f"-D{name}={value}" for name, value in (defines or {}).items()],
        host_dsn,
    ]
    say(f"  {target}: {clients} clients for {seconds} s …")
    machine_before = machine_cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    machine_cpu = machine_cpu_seconds() - machine_before
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(
            f"pgbench failed ({done.returncode}): {done.stdout[-1500:]} {done.stderr[-1500:]}"
        )
    latencies: list[float] = []
    counts = {0: 0, 1: 0, 2: 0}
    for log in logs.glob("log*"):
        for row in log.read_text().splitlines():
            fields = row.split()
            latencies.append(int(fields[2]) / 1000)
            counts[int(fields[3])] += 1
    latencies.sort()
    tps = float(match.group(1))

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else 0.0

    statements = {k: v for k, v in scripts.items()}
    result = LoadResult(
        target=target,
        clients=clients,
        seconds=len(latencies) / tps if tps else float(seconds),
        requests=0,
        lifecycles=len(latencies),
        refunds=counts[2],
        statuses=counts[1] + counts[2],
        errors=int(failed.group(1)) if failed else 0,
        p50_ms=pct(0.5),
        p99_ms=pct(0.99),
        p999_ms=pct(0.999),
        max_ms=latencies[-1] if latencies else 0.0,
        notes=[f"latency is one whole lifecycle's SQL; scripts {', '.join(statements)}"],
        machine_cpu_ms=1000 * machine_cpu / max(1, len(latencies)),
    )
    say(
        f"    {tps:.1f} lifecycles/s, p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms (per lifecycle)"
    )
    return result


# --- checks -------------------------------------------------------------------------------


def log_errors(log: Path) -> dict[str, int]:
    """Error and critical lines of a server's JSON log, counted by event."""
    counts: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in {"error", "critical"}:
            name = str(entry.get("event"))
            counts[name] = counts.get(name, 0) + 1
    return counts


def ledger_verify(env: dict[str, str], work: Path) -> str:
    done = subprocess.run(
        [str(BIN / "kassa"), "ledger", "verify"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kassa ledger verify failed: {done.stdout[-800:]} {done.stderr[-800:]}")
    return (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["ok"])[-1]


def check_states(
    pg: Postgres, database: str, max_pending: int, refunded_in_full: int = 0
) -> dict[str, Any]:
    """Every payment the load created is where its requests put it; none charged twice."""
    rows = pg.fetch(
        database,
        """
        SELECT p.status, count(*) AS n, sum(p.amount_refunded) AS refunded, sum(p.amount) AS amount
        FROM payment p JOIN user_account u ON u.id = p.user_id
        WHERE u.email LIKE 'bench-%' GROUP BY p.status
        """,
    )
    states = {r["status"]: int(r["n"]) for r in rows}
    refunded = {r["status"]: int(r["refunded"] or 0) for r in rows}
    charged = pg.fetch(
        database,
        "SELECT count(*) AS n, count(DISTINCT reference) AS refs FROM simulator_charge "
        "WHERE outcome = 'succeeded'",
    )[0]
    settled = (
        states.get("completed", 0) + states.get("partially_refunded", 0) + states.get("refunded", 0)
    )
    problems = []
    for bad in ("processing", "failed", "canceled"):
        if states.get(bad):
            problems.append(f"{states[bad]} payments {bad}")
    if states.get("refunded", 0) != refunded_in_full:
        problems.append(
            f"{states.get('refunded', 0)} payments refunded in full, expected {refunded_in_full}"
        )
    if states.get("pending", 0) > max_pending:
        problems.append(
            f"{states['pending']} pending (at most {max_pending} may be cut off mid-lifecycle)"
        )
    if refunded.get("partially_refunded", 0) != 1000 * states.get("partially_refunded", 0):
        problems.append("partially refunded payments do not each hold exactly one 1000 refund")
    if refunded.get("completed", 0):
        problems.append("a completed payment carries refunds")
    if int(charged["n"]) != int(charged["refs"]):
        problems.append(
            f"{charged['n']} simulator charges for {charged['refs']} references: a double charge"
        )
    if int(charged["n"]) < settled:
        problems.append(f"{settled} settled payments but only {charged['n']} simulator charges")
    if problems:
        odd = pg.fetch(
            database,
            """
            SELECT p.id, p.status, p.amount, p.amount_refunded, p.amount_refund_pending,
                   array_agg(r.amount || ':' || r.status ORDER BY r.created_at) AS refunds
            FROM payment p JOIN user_account u ON u.id = p.user_id
            LEFT JOIN refund r ON r.payment_id = p.id
            WHERE u.email LIKE 'bench-%' AND p.status NOT IN ('completed', 'pending')
              AND NOT (p.status = 'partially_refunded' AND p.amount_refunded = 1000)
            GROUP BY p.id LIMIT 10
            """,
        )
        details = [dict(row) for row in odd]
        raise RuntimeError("state check failed: " + "; ".join(problems) + f"; examples: {details}")
    return {"states": states, "simulator_charges": int(charged["n"])}


async def _race(bases: list[str], token: str, count: int) -> dict[str, Any]:
    """Across hosts: `count` payments each processed from every host at once, then fully
    refunded from every host at once. Each must succeed exactly once."""
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as client:
        ids = []
        for _ in range(count):
            created = await client.post(bases[0] + "/api/payments", json=PAYMENT, headers=auth)
            ids.append(created.json()["id"])

        async def fire(method: str, url: str, body: dict[str, Any] | None) -> int:
            headers = {**auth, "Idempotency-Key": uuid.uuid4().hex}
            return (await client.request(method, url, json=body, headers=headers)).status_code

        process_wins = refund_wins = 0
        process_codes: dict[int, int] = {}
        refund_codes: dict[int, int] = {}
        for payment_id in ids:
            codes = await asyncio.gather(
                *(
                    fire("POST", b + "/api/payments/process", {"payment_id": payment_id})
                    for b in bases
                    for _ in range(2)
                )
            )
            process_wins += codes.count(200)
            for code in codes:
                process_codes[code] = process_codes.get(code, 0) + 1
            codes = await asyncio.gather(
                *(
                    fire("POST", f"{b}/api/payments/{payment_id}/refund", None)
                    for b in bases
                    for _ in range(2)
                )
            )
            refund_wins += codes.count(201)
            for code in codes:
                refund_codes[code] = refund_codes.get(code, 0) + 1
    return {
        "payments": count,
        "process_200": process_wins,
        "refund_201": refund_wins,
        "process_codes": process_codes,
        "refund_codes": refund_codes,
    }


# --- profiling ----------------------------------------------------------------------------


def start_profile(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes] | None:
    py_spy = BIN / "py-spy"
    if not py_spy.exists():
        say("  py-spy not installed; no profile")
        return None
    command = [
        str(py_spy),
        "record",
        "-p",
        str(pid),
        "-d",
        str(seconds),
        "-r",
        "200",
        "-f",
        "raw",
        "-o",
        str(out),
        "--nonblocking",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise_profile(raw: Path, top: int = 30) -> list[str]:
    """Share of samples by function, inclusive, for kassa's and its libraries' frames."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue  # a frame name that spilled over a line break
        count = int(count_text)
        total += count
        frames = stack.split(";")
        names = []
        for frame in frames:
            name = re.sub(r" \((.*?)/site-packages/", " (", frame)
            name = re.sub(r" \(.*?/src/kassa/", " (kassa/", name)
            name = re.sub(r":\d+\)$", ")", name)
            names.append(name)
        for name in set(names):
            inclusive[name] = inclusive.get(name, 0) + count
        if names:
            own[names[-1]] = own.get(names[-1], 0) + count
    lines = [f"{total} samples; inclusive share (self share) of the top functions:"]
    for name, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(
            f"{100 * count / total:5.1f}% ({100 * own.get(name, 0) / total:4.1f}%)  {name}"
        )
    lines.append("top self time:")
    for name, count in sorted(own.items(), key=lambda kv: -kv[1])[:15]:
        lines.append(f"{100 * count / total:5.1f}%  {name}")
    return lines


# --- the run ------------------------------------------------------------------------------


@contextlib.contextmanager
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def redis_cleanup(redis_url: str, prefix: str) -> int:
    """Delete this run's keys (never FLUSHALL: the server may be shared)."""

    async def run() -> int:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await client.delete(*keys)
            return len(keys)
        finally:
            await client.aclose()

    return asyncio.run(run())


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
    }


def reference_env(dsn: str, redis_url: str, prefix: str, pool_size: int) -> dict[str, str]:
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REF_")}
    env.update(
        {
            "REF_DSN": dsn,
            "REF_REDIS_URL": redis_url,
            "REF_REDIS_PREFIX": f"{prefix}-ref",
            "REF_JWT_SECRET": secrets.token_urlsafe(48),
            "REF_CARD_KEY": key,
            "REF_POOL_SIZE": str(pool_size),
        }
    )
    return env


def start_reference(name: str, env: dict[str, str], work: Path, workers: int) -> Server:
    """The lean reference under uvicorn (uvloop and httptools, as `kassa serve`)."""
    port = free_port()
    log = work / f"{name}.log"
    command = [
        str(BIN / "uvicorn"),
        "--factory",
        "bench.reference.app:create_app",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",  # the app writes its own JSON access line
        "--log-level",
        "warning",
    ]
    with log.open("ab") as out:  # a server restarted per run appends
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(name, process, port, log)
    server.wait_ready("/healthz")
    return server


def _with_port(url: str, port: int) -> str:
    """The same URL (a DSN, a Redis URL) pointing at 127.0.0.1:`port` (a counting proxy)."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=(f"{user}@" if user else "") + f"127.0.0.1:{port}"))


def _host_port(url: str, default: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default


def probe_round_trips(
    kassa_env_: dict[str, str], ref_env: dict[str, str], redis_url: str, work: Path, tag: str
) -> dict[str, dict[str, dict[str, float]]]:
    """Each app, one worker, wired to its PostgreSQL and Redis through counting proxies;
    one lifecycle at a time, each request's messages counted (medians of 5)."""
    pg_host, pg_port = _host_port(kassa_env_["KASSA_DATABASE_URL"], 5432)
    redis_host, redis_port = _host_port(redis_url, 6379)
    out: dict[str, dict[str, dict[str, float]]] = {}
    with (
        wirecount.CountingProxy(pg_host, pg_port, wirecount.PgFrontend) as pg_proxy,
        wirecount.CountingProxy(redis_host, redis_port, wirecount.RespCommands) as redis_proxy,
    ):
        proxied_redis = _with_port(redis_url, redis_proxy.port)
        for app in ("kassa", "reference"):
            with servers() as running:
                if app == "kassa":
                    env = {
                        **kassa_env_,
                        "KASSA_DATABASE_URL": _with_port(
                            kassa_env_["KASSA_DATABASE_URL"], pg_proxy.port
                        ),
                        "KASSA_REDIS_URL": proxied_redis,
                    }
                    server = start_kassa("probe-kassa", env, work, 1)
                else:
                    env = {
                        **ref_env,
                        "REF_DSN": _with_port(ref_env["REF_DSN"], pg_proxy.port),
                        "REF_REDIS_URL": proxied_redis,
                    }
                    server = start_reference("probe-reference", env, work, 1)
                running.append(server)
                # Through the API (register, login), as kassa's user is made.
                token = seed_users(server, 1, work, f"{tag}p{app[0]}").read_text().split()[0]
                say(f"  counting {app}'s round trips per request (through proxies)")
                out[app] = wirecount.probe(server.base, token, pg_proxy, redis_proxy)
                summary = {part: out[app][part]["round_trips"] for part in out[app]}
                say(f"    round trips: {summary}")
    return out


def run_open_loops(
    targets: list[tuple[str, Callable[[], contextlib.AbstractContextManager[Server]], Path]],
    maximum: float,
    seconds: int,
) -> list[dict[str, Any]]:
    """At 25 %, 50 % and 75 % of kassa's measured maximum, each target in turn, each on a
    server started for the run."""
    rows: list[dict[str, Any]] = []
    for share, rate in zip((0.25, 0.5, 0.75), open_loop_rates(maximum), strict=True):
        for name, serving, tokens in targets:
            with serving() as server:
                say(f"  open loop {name}: {rate:.1f} lifecycles/s due ({share:.0%}), {seconds} s")
                before = server.cpu_seconds()
                row = openloop.run_open_loop(
                    name, "127.0.0.1", server.port, tokens.read_text().split(), rate, seconds
                )
                row["share"] = share
                row["server_cpu_ms"] = round(
                    1000 * (server.cpu_seconds() - before) / max(1, row["completed"]), 2
                )
            say(
                f"    {row['completed']}/{row['due']} lifecycles, p50 {row['p50_ms']} ms, "
                f"p99 {row['p99_ms']} ms, p99.9 {row['p999_ms']} ms, errors {row['errors']}"
            )
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="32,64", help="comma-separated client counts")
    parser.add_argument("--duration", type=int, default=20, help="seconds per measured run")
    parser.add_argument(
        "--warmup", type=int, default=5, help="seconds of load before each measured run"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved kassa/reference runs per client count"
    )
    parser.add_argument(
        "--open-loop-duration", type=int, default=None, help="seconds per open-loop rate"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-floor", action="store_true", help="no replay of kassa's SQL")
    parser.add_argument("--skip-pgbench", action="store_true")
    parser.add_argument("--skip-open-loop", action="store_true")
    parser.add_argument("--skip-probe", action="store_true", help="no round-trip counting")
    parser.add_argument("--skip-scale-out", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy one kassa worker in its last run"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    open_seconds = args.open_loop_duration or args.duration
    for tool in ("wrk", "pgbench"):
        if shutil.which(tool) is None:
            print(
                f"bench: {tool} not found (apt-get install wrk postgresql-client)", file=sys.stderr
            )
            return 2
    admin_dsn = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    tag = uuid.uuid4().hex[:8]
    prefix = f"kassa-bench-{tag}"
    pg = Postgres(admin_dsn)
    work = Path(tempfile.mkdtemp(prefix="kassa-bench-"))
    report: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(["bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "commit": _commit(),
    }
    results: list[LoadResult] = []
    failures: list[str] = report.setdefault("check_failures", [])

    def checked(check: Callable[[], Any]) -> Any:
        """A failed check is reported (and fails the run) without losing the figures."""
        try:
            return check()
        except RuntimeError as error:
            say(f"  CHECK FAILED: {str(error)[:2000]}")
            failures.append(str(error)[:2000])
            return f"FAILED: {str(error)[:300]}"

    say(f"machine: {report['machine']['cores']} cores, {report['machine']['cpu']}")
    say(f"PostgreSQL: {pg_headroom(admin_dsn)}")
    try:
        kassa_db, floor_db = f"kassa_bench_{tag}", f"kassa_bench_{tag}_floor"
        lean_db, lean_pgbench_db = f"kassa_bench_{tag}_lean", f"kassa_bench_{tag}_leanpgb"
        pg.create(kassa_db)
        env = kassa_env(pg.url(kassa_db), redis_url, prefix, work)
        subprocess.run(
            [str(BIN / "kassa"), "migrate"], cwd=work, env=env, check=True, capture_output=True
        )
        kassa_scripts: dict[str, Path] = {}
        plan_path = work / "plan.json"
        scripts = {
            "plain": ["create", "process"],
            "status": ["create", "process", "status"],
            "refund": ["create", "process", "status", "refund"],
        }
        if not (args.skip_floor and args.skip_pgbench):
            say("capturing kassa's own SQL for create, process, status and refund")
            try:
                plan = capture_plan(pg.url(kassa_db), {k: env[k] for k in _KASSA_SECRETS})
            except Exception as error:  # a capture that kassa's code outgrew: say so, go on
                say(f"  capture failed ({type(error).__name__}: {error}); no floor, no pgbench")
                report["capture_error"] = f"{type(error).__name__}: {error}"
            else:
                plan_path.write_text(plan.to_json())
                for name, parts in scripts.items():
                    path = work / f"kassa-{name}.sql"
                    path.write_text(pgbench_script(plan, parts))
                    kassa_scripts[name] = path
                report["captured_statements"] = {p: plan.statement_count(p) for p in PARTS}
                pg.create(floor_db, template=kassa_db)

        # The reference: its own schema in its own database, and a copy for pgbench.
        pg.create(lean_db)
        asyncio.run(reference_checks.apply_schema(pg.dsn(lean_db)))
        pg.create(lean_pgbench_db, template=lean_db)
        pgbench_login, pgbench_shopper = asyncio.run(
            reference_checks.seed_login(pg.dsn(lean_pgbench_db))
        )
        lean_scripts = {}
        for name, parts in scripts.items():
            path = work / f"reference-{name}.sql"
            path.write_text(reference_sql.pgbench_script(parts))
            lean_scripts[name] = path
        ref_env = reference_env(pg.dsn(lean_db), redis_url, prefix, pool_size=10)

        if not args.skip_probe:
            say("round trips per request: one worker each, through counting proxies")
            report["round_trips"] = probe_round_trips(env, ref_env, redis_url, work, tag)

        # Each run has its server to itself: started before, stopped after (so an idle
        # server's pool holds none of PostgreSQL's connections meanwhile). Tokens outlive
        # restarts: the secrets and the login rows stay.
        starters = {
            "kassa": lambda: start_kassa("kassa", env, work, args.workers),
            "reference": lambda: start_reference("reference", ref_env, work, args.workers),
        }
        peaks: dict[str, list[float]] = {"kassa": [], "reference": []}

        @contextlib.contextmanager
        def serving(app: str) -> Iterator[Server]:
            server = starters[app]()
            try:
                yield server
            finally:
                rss = [round(x, 1) for x in server.peak_rss_mib()]
                if sum(rss) > sum(peaks[app]):
                    peaks[app] = rss
                server.stop()

        with serving("kassa") as server:
            tokens_of = {"kassa": seed_users(server, max(clients), work, tag)}
        tokens_of["reference"] = work / "tokens-reference.txt"
        reference_tokens = reference_checks.seed_tokens(
            pg.dsn(lean_db), ref_env["REF_JWT_SECRET"], max(clients)
        )
        tokens_of["reference"].write_text("\n".join(asyncio.run(reference_tokens)) + "\n")
        targets = [
            (f"kassa ×{args.workers}", "kassa"),
            (f"reference ×{args.workers}", "reference"),
        ]
        say("interleaved closed-loop runs (wrk): kassa, reference, kassa, reference")
        for round_index in range(args.rounds):
            for count in clients:
                for name, app in targets:
                    with serving(app) as server:
                        run_wrk("warmup", server.base, count, args.warmup, tokens_of[app])
                        profile = None
                        last = round_index == args.rounds - 1 and count == clients[-1]
                        if args.profile and last and app == "kassa":
                            profile = start_profile(
                                server.worker_pids()[0],
                                max(5, args.duration - 5),
                                work / "profile.raw",
                            )
                        results.append(
                            run_wrk(name, server.base, count, args.duration, tokens_of[app], server)
                        )
                        if profile is not None:
                            profile.wait(timeout=60)
        maximum = kassa_maximum(results)
        report["kassa_maximum"] = round(maximum, 1)
        if not args.skip_open_loop and maximum > 0:
            say(f"open loop at 25/50/75 % of kassa's maximum ({maximum:.1f} lifecycles/s)")
            report["open_loop"] = run_open_loops(
                [(name, functools.partial(serving, app), tokens_of[app]) for name, app in targets],
                maximum,
                open_seconds,
            )
        report["kassa_peak_rss_mib"] = peaks["kassa"]
        report["reference_peak_rss_mib"] = peaks["reference"]
        kassa_log, reference_log = work / "kassa.log", work / "reference.log"
        report["kassa_log_errors"] = log_errors(kassa_log)
        report["reference_log_errors"] = _reference_log_errors(reference_log)
        say(f"  error lines: kassa {report['kassa_log_errors']}")
        say(f"  reference: {report['reference_log_errors']}")
        open_errors = sum(r["errors"] for r in report.get("open_loop", []))
        wrk_runs = 2 * args.rounds * len(clients)  # warm-ups and measured runs
        cut_off = sum(clients) * 2 * args.rounds + open_errors
        say("checking: kassa ledger verify, payment states, simulator charges")
        report["ledger_verify"] = checked(lambda: ledger_verify(env, work))
        report["kassa_states"] = checked(lambda: check_states(pg, kassa_db, max_pending=cut_off))
        say(f"  ledger: {report['ledger_verify']}; {report['kassa_states']}")
        say("checking the reference: books, states, network records")
        report["reference_states"] = checked(
            lambda: asyncio.run(
                reference_checks.check_reference(pg.dsn(lean_db), max_pending=cut_off)
            )
        )
        say(f"  {report['reference_states']} ({wrk_runs} wrk runs each)")
        if (work / "profile.raw").exists():
            report["profile"] = summarise_profile(work / "profile.raw")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(work / "profile.raw", args.out.parent / "profile.raw")

        if not args.skip_floor and kassa_scripts:
            with servers() as running:
                floor = start_floor(plan_path, pg.dsn(floor_db), work, args.workers)
                running.append(floor)
                for count in clients:
                    run_wrk("warmup", floor.base, count, args.warmup, tokens_of["kassa"])
                    results.append(
                        run_wrk(
                            f"floor ×{args.workers}",
                            floor.base,
                            count,
                            args.duration,
                            tokens_of["kassa"],
                            floor,
                        )
                    )
        if not args.skip_pgbench:
            for count in clients:
                if kassa_scripts:
                    results.append(
                        run_pgbench(
                            pg, floor_db, kassa_scripts, count, args.duration, work,
                            target="pgbench kassa-sql",
                        )
                    )  # fmt: skip
                results.append(
                    run_pgbench(
                        pg, lean_pgbench_db, lean_scripts, count, args.duration, work,
                        target="pgbench reference-sql",
                        defines={"login": pgbench_login, "shopper": pgbench_shopper},
                    )
                )  # fmt: skip

        if not args.skip_scale_out:
            report["scale_out"] = checked(
                lambda: scale_out(pg, tag, redis_url, work, max(clients), args)
            )
            if isinstance(report["scale_out"], dict):
                results.extend(report["scale_out"].pop("results"))
    finally:
        pg.drop_all()
        say(f"cleaned up: databases dropped, {redis_cleanup(redis_url, prefix)} Redis keys deleted")

    report["results"] = [
        asdict(r) | {"lifecycles_per_s": r.lifecycles_per_s, "requests_per_s": r.requests_per_s}
        for r in results
    ]
    report["comparison"] = compare(results, clients)
    report["pgbench"] = _pgbench_ratios(results, clients)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print_report(report, results, args, open_seconds)
    for failure in failures:
        print(f"CHECK FAILED: {failure[:600]}")
    errors = (
        len(failures)
        + sum(r.errors for r in results)
        + sum(report["kassa_log_errors"].values())
        + sum(report["reference_log_errors"].values())
        + sum(r["errors"] for r in report.get("open_loop", []))
    )
    print(f"\nerrors in all runs: {errors}; figures written to {args.out}")
    if errors:
        print(f"servers' logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if errors else 0


_KASSA_SECRETS = ("KASSA_JWT_SECRET", "KASSA_VAULT_KEYS")


def pg_headroom(admin_dsn: str) -> str:
    """max_connections and how many are in use now: the shared server's other clients can
    leave kassa's pools (40 a worker today) short, which shows as 500s and stuck payments."""

    async def ask() -> str:
        connection = await asyncpg.connect(admin_dsn)
        try:
            limit = await connection.fetchval("SHOW max_connections")
            used = await connection.fetchval("SELECT count(*) FROM pg_stat_activity")
        finally:
            await connection.close()
        return f"max_connections {limit}, {used} in use before the run"

    try:
        return asyncio.run(ask())
    except (OSError, asyncpg.PostgresError) as error:
        return f"not asked ({error})"


def _commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def _reference_log_errors(log: Path) -> dict[str, int]:
    """5xx access lines and anything that is not an access line (a traceback)."""
    counts: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict) and entry.get("event") == "request":
            if int(entry.get("status", 0)) >= 500:
                counts["5xx"] = counts.get("5xx", 0) + 1
        elif line.strip() and not line.startswith("INFO"):
            counts["other"] = counts.get("other", 0) + 1
    return counts


def _pgbench_ratios(results: list[LoadResult], clients: list[int]) -> dict[int, float]:
    out = {}
    for count in clients:
        ours = [r for r in results if r.target == "pgbench kassa-sql" and r.clients == count]
        theirs = [r for r in results if r.target == "pgbench reference-sql" and r.clients == count]
        if ours and theirs and theirs[0].lifecycles_per_s:
            out[count] = round(ours[0].lifecycles_per_s / theirs[0].lifecycles_per_s, 3)
    return out


def print_report(
    report: dict[str, Any], results: list[LoadResult], args: argparse.Namespace, open_seconds: int
) -> None:
    m = report["machine"]
    print()
    print(f"kassa benchmark — {m['date']}, {m['cores']} cores ({m['cpu']}), at {report['commit']}")
    print(
        "lifecycle = create + process; a status read every 2nd, a 1000 refund every 4th; "
        f"{args.duration} s per closed-loop run after {args.warmup} s of warm-up, "
        f"{args.rounds} interleaved rounds"
    )
    print()
    print("\n".join(load_table(results)))
    print()
    print("\n".join(comparison_lines(report["comparison"])))
    if report["pgbench"]:
        print(
            "pgbench, the database's ceiling for each design (lifecycles/s, kassa's SQL over the "
            "reference's): "
            + ", ".join(f"{c} clients {v:.2f}" for c, v in report["pgbench"].items())
        )
    if "round_trips" in report:
        print()
        print("round trips per request (medians; counted on the wire by a proxy):")
        print("\n".join(round_trip_table(report["round_trips"])))
        lifecycle = {
            app: round(per_lifecycle(counts, "round_trips"), 2)
            for app, counts in report["round_trips"].items()
        }
        print(f"per lifecycle: {lifecycle}")
    if "open_loop" in report:
        print()
        print(
            f"open loop ({open_seconds} s per rate; kassa's maximum "
            f"{report['kassa_maximum']:.1f} lifecycles/s; latency per request, the first of a "
            "lifecycle from its due time):"
        )
        print("\n".join(open_loop_table(report["open_loop"])))
    print()
    print(
        f"peak RSS per worker (MiB): kassa {report.get('kassa_peak_rss_mib')}, "
        f"reference {report.get('reference_peak_rss_mib')}"
    )
    if "captured_statements" in report:
        print(
            f"kassa's captured statements (BEGIN/COMMIT included): {report['captured_statements']}"
        )
    print(f"kassa ledger verify: {report['ledger_verify']}; states: {report['kassa_states']}")
    print(f"reference checks: {report['reference_states']}")
    if "scale_out" in report:
        print(f"scale-out: {json.dumps(report['scale_out'])}")
    if "profile" in report:
        print("\n".join(report["profile"]))


def scale_out(
    pg: Postgres, tag: str, redis_url: str, work: Path, clients: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Two kassa hosts (one worker each) on one PostgreSQL and one Redis."""
    say("scale-out: two kassa hosts sharing one PostgreSQL and one Redis")
    database = f"kassa_bench_{tag}_scale"
    pg.create(database)
    env = kassa_env(pg.url(database), redis_url, f"kassa-bench-{tag}", work)
    subprocess.run(
        [str(BIN / "kassa"), "migrate"], cwd=work, env=env, check=True, capture_output=True
    )
    per_host = clients // 2
    out: dict[str, Any] = {}
    with servers() as running:
        hosts = [start_kassa(f"host-{i}", env, work, 1) for i in (1, 2)]
        running.extend(hosts)
        tokens = seed_users(hosts[0], per_host * 2 + 1, work, f"{tag}s")
        names = tokens.read_text().split()
        for index in range(len(hosts)):
            part = work / f"tokens-host-{index}.txt"
            part.write_text("\n".join(names[index * per_host : (index + 1) * per_host]) + "\n")
        say(f"  wrk on both hosts at once, {per_host} clients each, {args.duration} s")
        with tempfile.TemporaryDirectory() as tmp:
            procs = []
            for index, host in enumerate(hosts):
                script = (
                    "from bench.run import run_wrk; from pathlib import Path; "
                    "import json, dataclasses;"
                    f"r = run_wrk('host-{index + 1}', '{host.base}', {per_host}, {args.duration}, "
                    f"Path('{work}/tokens-host-{index}.txt'));"
                    f"Path('{tmp}/{index}.json').write_text(json.dumps(dataclasses.asdict(r)))"
                )
                procs.append(subprocess.Popen([sys.executable, "-c", script], cwd=ROOT))
            for proc in procs:
                proc.wait()
            parts = [
                LoadResult(**json.loads((Path(tmp) / f"{i}.json").read_text())) for i in range(2)
            ]
        seconds = statistics.mean(p.seconds for p in parts)
        combined = LoadResult(
            target="scale-out (2 hosts ×1)",
            clients=per_host * 2,
            seconds=seconds,
            requests=sum(p.requests for p in parts),
            lifecycles=sum(p.lifecycles for p in parts),
            refunds=sum(p.refunds for p in parts),
            statuses=sum(p.statuses for p in parts),
            errors=sum(p.errors for p in parts),
            p50_ms=max(p.p50_ms for p in parts),
            p99_ms=max(p.p99_ms for p in parts),
            p999_ms=max(p.p999_ms for p in parts),
            max_ms=max(p.max_ms for p in parts),
            notes=["latency: the worse host's percentile"],
        )
        say(
            f"    together {combined.lifecycles_per_s:.1f} lifecycles/s, "
            f"p99 {combined.p99_ms:.1f} ms, errors {combined.errors}"
        )
        say(
            "  cross-host races: each payment processed 4× at once (2 per host), "
            "then fully refunded 4× at once"
        )
        race = asyncio.run(_race([h.base for h in hosts], names[-1], 20))
        say(f"    {race}")
        if race["process_200"] != race["payments"] or race["refund_201"] != race["payments"]:
            raise RuntimeError(f"cross-host race broke exactly-once: {race}")
        out["race"] = race
    out["ledger_verify"] = ledger_verify(env, work)
    out["states"] = check_states(
        pg, database, max_pending=clients, refunded_in_full=race["payments"]
    )
    say(f"  ledger: {out['ledger_verify']}; {out['states']}")
    out["results"] = [combined]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
