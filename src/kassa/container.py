"""The collaborators of one running app, built once at start-up from the settings.

Tests build their own with another clock, processor or database."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from limits.aio.storage import Storage
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kassa.auth.service import AuthService
from kassa.auth.tokens import TokenCodec
from kassa.db import create_engine, create_session_factory, utcnow
from kassa.idempotency.service import IdempotencyService
from kassa.observability.dbmetrics import instrument_pool
from kassa.payments.service import PaymentService
from kassa.processors.base import Processor
from kassa.processors.simulator import SimulatorProcessor
from kassa.processors.simulator_store import DatabaseSimulatorStore
from kassa.ratelimit.limiter import LoginThrottle, RateLimiter, create_storage
from kassa.refunds.service import RefundService
from kassa.settings import Settings
from kassa.transactions.service import TransactionService
from kassa.vault.crypto import Vault


@dataclass
class Container:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    limiter: RateLimiter
    processor: Processor
    auth: AuthService
    payments: PaymentService
    refunds: RefundService
    transactions: TransactionService
    idempotency: IdempotencyService

    async def aclose(self) -> None:
        await self.engine.dispose()


def build_processor(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Processor:
    if settings.processor == "stripe":
        raise NotImplementedError("the Stripe connector is not available in this version")
    # The simulator keeps its records in the database, so every process agrees on them.
    return SimulatorProcessor(
        DatabaseSimulatorStore(sessions), delay_seconds=settings.simulator_delay_ms / 1000
    )


def build_container(
    settings: Settings,
    *,
    processor: Processor | None = None,
    clock: Callable[[], datetime] = utcnow,
    storage: Storage | None = None,
) -> Container:
    engine = create_engine(settings.resolved_database_url)
    instrument_pool(engine)
    sessions = create_session_factory(engine)
    storage = storage or create_storage(settings.redis_url)
    processor = processor or build_processor(settings, sessions)
    secrets = settings.secrets
    vault = Vault(secrets.vault_keys)
    tokens = TokenCodec(
        secrets.jwt_secret,
        access_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
    )
    return Container(
        settings=settings,
        engine=engine,
        sessions=sessions,
        storage=storage,
        limiter=RateLimiter(storage, settings.rate_limit),
        processor=processor,
        auth=AuthService(sessions, tokens, LoginThrottle(storage), clock),
        payments=PaymentService(sessions, vault, processor, clock, settings.max_amount),
        refunds=RefundService(sessions, processor, clock),
        transactions=TransactionService(sessions),
        idempotency=IdempotencyService(
            sessions,
            hmac.new(secrets.jwt_secret, b"kassa-idempotency-fingerprint", "sha256").digest(),
            clock,
        ),
    )
