"""Black-box: `kassa serve --workers 2` writing one rotated log file from every process, and
sending its spans to an OTLP collector (a tiny HTTP server here) from every worker."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.acceptance.conftest import Server, launch, stop
from tests.acceptance.test_lifecycle import CARD, card_payment, log_lines, register_and_login
from tests.webhooks import Receiver

pytestmark = pytest.mark.acceptance

_STARTED = re.compile(r"Started server process \[(\d+)\]")


def wait_for_request_ids(server: Server, request_ids: list[str]) -> None:
    """Until stdout has the access line of every request (written just after its response)."""
    deadline = time.monotonic() + 15
    while True:
        logged = {line.get("request_id") for line in log_lines(server)}
        if logged >= set(request_ids):
            return
        assert time.monotonic() < deadline, f"missing: {sorted(set(request_ids) - logged)}"
        time.sleep(0.1)


def file_lines(directory: Path, name: str) -> list[str]:
    lines: list[str] = []
    for path in sorted(directory.glob(f"{name}*")):
        lines.extend(line for line in path.read_text(encoding="utf-8").splitlines() if line)
    return lines


def test_every_process_appends_the_same_lines_to_one_rotated_log_file(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    request_ids = [f"log-file-{n:03d}" for n in range(40)]
    server = launch(
        tmp_path,
        "--workers",
        "2",
        log_file=str(logs / "kassa.log"),
        log_file_max_bytes="2048",
        log_file_backups="100",  # enough that nothing written here is rotated away
    )
    try:
        for request_id in request_ids:
            with server.client() as fresh:  # a new connection: either worker may take it
                response = fresh.get("/api/auth/profile", headers={"X-Request-ID": request_id})
                assert response.status_code == 401
        wait_for_request_ids(server, request_ids)
    finally:
        stop(server.process)

    assert server.stderr() == ""
    names = {path.name for path in logs.iterdir()}
    assert {"kassa.log", "kassa.log.1"} <= names  # rotated by size
    written = file_lines(logs, "kassa.log")
    parsed = [json.loads(line) for line in written]  # whole lines, none torn by a neighbour
    in_files = {line.get("request_id") for line in parsed if line["event"] == "request"}
    assert set(request_ids) <= in_files
    # Both workers (and the parent that migrated) wrote to the same set of files...
    workers = {m.group(1) for line in parsed if (m := _STARTED.search(str(line["event"])))}
    assert len(workers) == 2
    # ...exactly the lines they printed on stdout.
    stdout = [line for line in server.stdout().splitlines() if line]
    assert sorted(written) == sorted(stdout)
    assert CARD not in "\n".join(written)


def decode(bodies: list[bytes]) -> list[ExportTraceServiceRequest]:
    decoded = []
    for body in bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        decoded.append(request)
    return decoded


def spans_by_pid(requests: list[ExportTraceServiceRequest]) -> dict[str, list[Any]]:
    """The spans received, by the process.pid of their resource."""
    found: dict[str, list[Any]] = {}
    for request in requests:
        for resource_spans in request.resource_spans:
            attributes = {
                a.key: a.value.string_value or str(a.value.int_value)
                for a in resource_spans.resource.attributes
            }
            assert attributes["service.name"] == "kassa"
            for scope_spans in resource_spans.scope_spans:
                found.setdefault(attributes["process.pid"], []).extend(scope_spans.spans)
    return found


def test_spans_reach_an_otlp_collector_from_every_worker(tmp_path: Path) -> None:
    collector = Receiver().start()
    server = launch(
        tmp_path,
        "--workers",
        "2",
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds: export soon after each span
            "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel,process",  # process.pid
        },
    )
    try:
        with server.client() as client:
            user = register_and_login(client)
            token = user["tokens"]["access_token"]
            created = client.post("/api/payments", json=card_payment(), headers=user["headers"])
            assert created.status_code == 201, created.text
            processed = client.post(
                "/api/payments/process",
                json={"payment_id": created.json()["id"]},
                headers=user["headers"],
            )
            assert processed.json()["status"] == "completed"
        # New connections until both workers have answered (and exported) some.
        deadline = time.monotonic() + 30
        while True:
            with server.client() as fresh:
                assert fresh.get("/api/auth/profile", headers=user["headers"]).status_code == 200
            spans = spans_by_pid(decode(collector.bodies()))
            names = {span.name for found in spans.values() for span in found}
            if len(spans) >= 2 and "POST /api/payments/process" in names:
                break
            assert time.monotonic() < deadline, f"spans from {len(spans)} workers: {names}"
            time.sleep(0.1)
    finally:
        stop(server.process)
        collector.stop()

    assert server.stderr() == ""
    assert {r.path for r in collector.requests} == {"/v1/traces"}
    spans = spans_by_pid(decode(collector.bodies()))  # with what shutting down flushed
    assert len(spans) == 2
    names = {span.name for found in spans.values() for span in found}
    assert {"POST /api/payments", "POST /api/payments/process", "processor.charge"} <= names
    assert "GET /api/auth/profile" in names
    assert any(name.startswith(("INSERT", "UPDATE", "SELECT")) for name in names)
    everything = b"".join(collector.bodies())
    assert CARD.encode() not in everything
    assert token.encode() not in everything
    assert user["password"].encode() not in everything
