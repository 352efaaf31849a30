"""Signed webhook delivery, at least once, by any number of workers on any hosts.

`WebhookDeliverer.run` keeps a bounded pool of attempts (`concurrency`) and fills each slot
the moment it frees, so a receiver that hangs holds one slot until its timeout, never a
whole batch; and no endpoint has more than `per_endpoint` attempts in flight across every
worker, so one tenant's slow endpoint takes a few slots and everyone else's deliveries go
on. Each attempt:
1. is claimed in one short transaction — claims are serialized (an advisory lock on
   PostgreSQL; SQLite serializes writers) so that the per-endpoint count is exact, and
   `SELECT … FOR UPDATE SKIP LOCKED` passes over rows being recorded — with a lease
   (`LEASE`) under this claim's token;
2. POSTs each event outside any transaction, signed per Standard Webhooks
   (`webhook-id` = the event id, `webhook-timestamp`, `webhook-signature: v1,…`), after
   checking the URL's addresses again, to one of the addresses checked;
3. records the attempt and, if it still holds the lease, the outcome: 2xx succeeds; anything
   else is retried after an exponential backoff with full jitter (`retry_delay`) until the
   retry window (`RETRY_WINDOW`, three days) has passed, then the delivery fails and an
   endpoint that has failed for the whole window is disabled.

A worker killed between 1 and 3 leaves a lease that runs out; the delivery is then due again
for every worker (at least once: the receiver may see it twice and dedups by `webhook-id`).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from standardwebhooks import Webhook

from kassa.db import Database, new_id
from kassa.vault.crypto import Sealed, Vault
from kassa.webhooks import repository
from kassa.webhooks.models import WebhookAttempt
from kassa.webhooks.service import secret_context
from kassa.webhooks.urls import (
    AddressRefused,
    IPAddress,
    Resolver,
    UrlRejected,
    WebhookTarget,
    loggable_url,
    parse_url,
    resolve_and_check,
)

log = structlog.get_logger("kassa.webhooks")

LEASE = timedelta(seconds=60)
ATTEMPT_TIMEOUT_SECONDS = 10.0
CONCURRENCY = 32
PER_ENDPOINT = 4
RETRY_WINDOW = timedelta(days=3)
BACKOFF_BASE = timedelta(seconds=15)
BACKOFF_CAP = timedelta(hours=8)
MIN_DELAY = timedelta(seconds=1)
USER_AGENT = "kassa-webhooks/1"


def retry_delay(failed_attempts: int, rng: random.Random) -> timedelta:
    """The wait after the `failed_attempts`-th failure in a row: full jitter, uniform between
    one second and min(8 h, 15 s · 2^(n-1)). The ceiling reaches 8 h after the 12th failure,
    so a dead endpoint sees about 30 attempts over the three-day window."""
    exponent = max(0, min(failed_attempts - 1, 30))
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2**exponent))
    jittered: timedelta = ceiling * rng.random()
    return max(MIN_DELAY, jittered)


@dataclass(frozen=True, slots=True)
class Claim:
    delivery_id: uuid.UUID
    token: uuid.UUID
    endpoint_id: uuid.UUID
    url: str
    secret: Sealed = field(repr=False)
    event_id: uuid.UUID
    event_type: str
    body: str = field(repr=False)
    attempt: int


@dataclass(frozen=True, slots=True)
class AttemptResult:
    response_status: int | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.error is None


class WebhookDeliverer:
    def __init__(
        self,
        db: Database,
        vault: Vault,
        clock: Callable[[], datetime],
        *,
        require_https: bool,
        allow_private: bool,
        resolver: Resolver,
        lease: timedelta = LEASE,
        timeout: float = ATTEMPT_TIMEOUT_SECONDS,
        concurrency: int = CONCURRENCY,
        per_endpoint: int = PER_ENDPOINT,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._db = db
        self._vault = vault
        self._clock = clock
        self._require_https = require_https
        self._allow_private = allow_private
        self._resolver = resolver
        self._lease = lease
        self._timeout = timeout
        self._concurrency = concurrency
        self._per_endpoint = per_endpoint
        self._rng = rng or random.SystemRandom()
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout),
                follow_redirects=False,  # a redirect could point anywhere, unchecked
                trust_env=False,  # no proxy from the environment: we connect where we checked
                transport=self._transport,
            )
        return self._client

    async def run(self, stopping: asyncio.Event, *, poll: float = 0.5) -> None:
        """Deliver until `stopping` is set, at most `concurrency` attempts at once: whenever a
        slot frees (or every `poll` seconds when nothing was due), claim what is due for the
        free slots. On stop, the attempts under way finish (each within its timeout)."""
        running: set[asyncio.Task[None]] = set()
        freed = asyncio.Event()

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            freed.set()

        try:
            while not stopping.is_set():
                freed.clear()
                free = self._concurrency - len(running)
                if free > 0:
                    try:
                        claims = await self._claim(free)
                    except Exception:
                        # A database outage must not end delivery; try again next poll.
                        log.exception("webhook_claim_failed")
                        claims = []
                    for claim in claims:
                        task = asyncio.create_task(self._deliver(claim))
                        running.add(task)
                        task.add_done_callback(finished)
                    if len(claims) == free and free > 0:
                        continue  # more may be due: fill the pool before waiting
                await _first_of(freed, stopping, seconds=poll)
        finally:
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def deliver_due(self, batch: int = 20) -> int:
        """Claim up to `batch` due deliveries (within the per-endpoint cap) and attempt each
        once, concurrently; the number attempted. For `kassa worker --once` and tests."""
        claims = await self._claim(batch)
        if claims:
            await asyncio.gather(*(self._deliver(claim) for claim in claims))
        return len(claims)

    async def _claim(self, batch: int) -> list[Claim]:
        now = self._clock()
        token = new_id()
        async with self._db.transaction() as db:
            rows = await repository.claim_due(db, now, batch, self._per_endpoint)
            if not rows:
                return []
            await repository.lease(db, [d.id for d, _ in rows], now + self._lease, token, now)
        return [
            Claim(
                delivery_id=d.id,
                token=token,
                endpoint_id=e.id,
                url=e.url,
                secret=Sealed(e.secret_key_id, e.secret_sealed),
                event_id=d.event_id,
                event_type=d.event_type,
                body=d.body,
                attempt=d.attempt_count + 1,
            )
            for d, e in rows
        ]

    async def _deliver(self, claim: Claim) -> None:
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self._timeout):
                status = await self._post(claim)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except (UrlRejected, AddressRefused) as exc:
            error = f"refused: {exc}"
        except TimeoutError:
            error = f"timed out after {self._timeout:g} s"
        except httpx.HTTPError as exc:
            error = f"request failed: {type(exc).__name__}"
        except Exception as exc:
            log.exception("webhook_attempt_error", delivery_id=str(claim.delivery_id))
            error = f"internal error: {type(exc).__name__}"
        elapsed_ms = int((time.monotonic() - started) * 1000)
        result = AttemptResult(status, error[:255] if error else None, elapsed_ms)
        try:
            await self._record(claim, result)
        except Exception:
            # The lease runs out and another round tries again: at least once still holds.
            log.exception("webhook_record_failed", delivery_id=str(claim.delivery_id))

    async def _post(self, claim: Claim) -> int:
        target = parse_url(claim.url, require_https=self._require_https)
        addresses = await resolve_and_check(
            target, self._resolver, allow_private=self._allow_private
        )
        secret = self._vault.decrypt(claim.secret, context=secret_context(claim.endpoint_id))
        msg_id = str(claim.event_id)
        # Signed with the wall clock: receivers compare the timestamp with their own clock.
        seconds = int(time.time())
        signature = Webhook(secret).sign(
            msg_id=msg_id, timestamp=datetime.fromtimestamp(seconds, UTC), data=claim.body
        )
        headers = {
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(seconds),
            "webhook-signature": signature,
        }
        content = claim.body.encode("utf-8")
        failure: httpx.ConnectError | None = None
        for address in addresses:
            try:
                return await self._send(target, address, headers, content)
            except httpx.ConnectError as exc:
                failure = exc  # try the host's next address, as a browser would
        assert failure is not None
        raise failure

    async def _send(
        self, target: WebhookTarget, address: IPAddress, headers: dict[str, str], content: bytes
    ) -> int:
        extensions: dict[str, str] = {}
        if target.scheme == "https" and not target.is_ip_literal:
            extensions["sni_hostname"] = target.host  # and the certificate is checked for it
        url = target.url_for(address)
        async with self._http().stream(
            "POST", url, content=content, headers=headers, extensions=extensions
        ) as response:
            # The body is never read: only the status matters, and it could be huge.
            return response.status_code

    async def _record(self, claim: Claim, result: AttemptResult) -> None:
        now = self._clock()
        async with self._db.transaction() as db:
            # Endpoint before delivery, the order every writer of both takes locks in.
            endpoint = await repository.lock_endpoint(db, claim.endpoint_id)
            delivery = await repository.lock_delivery(db, claim.delivery_id)
            if endpoint is None or delivery is None:
                return  # deleted meanwhile
            await repository.insert_attempt(
                db,
                WebhookAttempt(
                    id=new_id(),
                    delivery_id=delivery.id,
                    endpoint_id=endpoint.id,
                    event_id=claim.event_id,
                    event_type=claim.event_type,
                    attempt=claim.attempt,
                    status="succeeded" if result.succeeded else "failed",
                    response_status=result.response_status,
                    error=result.error,
                    duration_ms=result.duration_ms,
                    created_at=now,
                ),
            )
            if delivery.lease_token != claim.token or delivery.status != "pending":
                # The lease ran out and another worker took over, or the event was queued
                # again: the attempt is history, the current holder decides what comes next.
                return
            delivery.attempt_count = claim.attempt
            delivery.last_attempt_at = now
            delivery.last_response_status = result.response_status
            delivery.last_error = result.error
            delivery.lease_until = None
            delivery.lease_token = None
            delivery.updated_at = now
            if result.succeeded:
                delivery.status = "succeeded"
                endpoint.failing_since = None
                outcome = "succeeded"
            else:
                if endpoint.failing_since is None:
                    endpoint.failing_since = now
                window_end = delivery.window_started_at + RETRY_WINDOW
                if now < window_end:
                    delay = retry_delay(claim.attempt, self._rng)
                    delivery.next_attempt_at = min(now + delay, window_end)
                    outcome = "retrying"
                else:
                    delivery.status = "failed"
                    outcome = "failed"
                    if endpoint.enabled and endpoint.failing_since <= now - RETRY_WINDOW:
                        endpoint.enabled = False
                        endpoint.disabled_at = now
                        endpoint.updated_at = now
                        await repository.save_delivery(db, delivery)
                        await repository.fail_pending_deliveries(
                            db, endpoint.id, "endpoint disabled", now
                        )
                        outcome = "endpoint_disabled"
            await repository.save_delivery(db, delivery)
            await repository.save_endpoint(db, endpoint)
        log.info(
            "webhook_attempt",
            delivery_id=str(claim.delivery_id),
            endpoint_id=str(claim.endpoint_id),
            url=loggable_url(claim.url),
            event_id=str(claim.event_id),
            attempt=claim.attempt,
            response_status=result.response_status,
            outcome=outcome,
            duration_ms=result.duration_ms,
        )


async def _first_of(*events: asyncio.Event, seconds: float) -> None:
    """Wait until one of `events` is set, or `seconds`."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
