"""`kassa worker`: the jobs that keep money consistent after crashes and lost answers, and
webhook delivery.

Every round reconciles stale `processing` payments and `pending` refunds, looks up payments
left waiting for their customer (3-D Secure), voids authorizations older than
`KASSA_AUTHORIZATION_EXPIRY_HOURS`, and purges expired idempotency keys. Rounds of several
workers may overlap: every settlement is a conditional update and the processor dedups by
reference, so nothing is done twice.

Beside the rounds, webhooks are delivered by a bounded pool that claims due deliveries as
its slots free (and polls every `delivery_poll` seconds when nothing is due), at most
`KASSA_WEBHOOK_CONCURRENCY` attempts at once and `KASSA_WEBHOOK_ENDPOINT_CONCURRENCY` per
endpoint (`kassa.webhooks.delivery`); workers claim disjoint deliveries, and a killed
worker's claims go to another once their lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import timedelta

import structlog

from kassa.container import Container

log = structlog.get_logger("kassa.worker")


class Worker:
    def __init__(
        self,
        container: Container,
        *,
        interval: float,
        older_than: timedelta,
        delivery_poll: float = 0.5,
    ) -> None:
        self._container = container
        self._interval = interval
        self._older_than = older_than
        self._delivery_poll = delivery_poll
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run_round(self) -> None:
        payments = await self._container.payments.reconcile(older_than=self._older_than)
        expired = await self._container.payments.expire_authorizations()
        refunds = await self._container.refunds.reconcile(older_than=self._older_than)
        purged = await self._container.idempotency.purge_expired()
        if payments.examined or payments.resumed or expired or refunds.examined or purged:
            log.info(
                "worker_round",
                payments_settled=payments.settled,
                payments_unresolved=payments.unresolved,
                payments_resumed=payments.resumed,
                authorizations_expired=expired,
                refunds_settled=refunds.settled,
                refunds_unresolved=refunds.unresolved,
                idempotency_keys_purged=purged,
            )

    async def run_deliveries(self) -> int:
        """Send every webhook delivery due now, a pool's worth at a time; the number
        attempted (`--once`)."""
        attempted = 0
        batch = self._container.settings.webhook_concurrency
        while not self._stopping.is_set():
            claimed = await self._container.deliveries.deliver_due(batch)
            attempted += claimed
            if claimed == 0:
                break
        return attempted

    async def _rounds(self, once: bool) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_round()
            except Exception:
                # A database or processor outage must not end the worker; retry next round.
                log.exception("worker_round_failed")
            if once:
                break
            await self._pause(self._interval)

    async def _deliveries(self, once: bool) -> None:
        if once:
            try:
                await self.run_deliveries()
            except Exception:
                log.exception("webhook_delivery_round_failed")
            return
        await self._container.deliveries.run(self._stopping, poll=self._delivery_poll)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def run(self, *, once: bool = False) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        log.info("worker_started", interval_seconds=self._interval)
        try:
            await asyncio.gather(self._rounds(once), self._deliveries(once))
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        log.info("worker_stopped")
