"""The collaborators of one running app, built once at start-up from the settings.

Tests build their own with another clock, processor or database."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from limits.aio.storage import Storage

from kassa.apikeys.service import ApiKeyService
from kassa.auditlog.service import AuditLog
from kassa.auth.passwords import Argon2Params, Passwords
from kassa.auth.service import AuthService
from kassa.auth.tokens import TokenCodec
from kassa.checkout.service import CheckoutService
from kassa.db import Database, open_database, utcnow
from kassa.edge.pages import FormGuard
from kassa.events.service import EVENT_TYPES, EventService
from kassa.idempotency.service import IdempotencyService
from kassa.observability.dbmetrics import instrument_pool
from kassa.payments.lists import PaymentLists
from kassa.payments.returns import ReturnPages
from kassa.payments.service import PaymentService
from kassa.processors.base import Processor
from kassa.processors.customers import DatabaseCustomerStore
from kassa.processors.faults import FaultInjectingProcessor, parse_faults
from kassa.processors.modes import Processors
from kassa.processors.simulator import SimulatorProcessor
from kassa.processors.simulator_store import DatabaseSimulatorStore
from kassa.processors.stripe import StripeProcessor
from kassa.ratelimit.limiter import LimitStore, LoginThrottle, RateLimiter, create_storage
from kassa.refunds.lists import RefundLists
from kassa.refunds.service import RefundService
from kassa.settings import Settings
from kassa.transactions.service import TransactionService
from kassa.vault.crypto import Vault
from kassa.vault.fingerprint import CardFingerprinter
from kassa.vault.rotation import VaultRotator
from kassa.webhooks.delivery import WebhookDeliverer
from kassa.webhooks.service import WebhookService
from kassa.webhooks.urls import Resolver, system_resolver


@dataclass
class Container:
    settings: Settings
    db: Database  # the one way to the database
    storage: Storage
    limits: LimitStore  # the storage behind every limit, with its in-process fallback
    limiter: RateLimiter
    processor: Processor  # live mode's: the configured one (KASSA_PROCESSOR)
    test_processor: Processor  # test mode's: always the simulator
    auth: AuthService
    keys: ApiKeyService
    payments: PaymentService
    refunds: RefundService
    transactions: TransactionService
    idempotency: IdempotencyService
    events: EventService
    webhooks: WebhookService
    deliveries: WebhookDeliverer
    vault_rotator: VaultRotator
    checkout: CheckoutService
    forms: FormGuard  # CSRF tokens of the checkout and dashboard forms
    payment_lists: PaymentLists
    refund_lists: RefundLists
    audit_log: AuditLog
    owns_processor: bool = False  # built from the settings here, so closed here

    async def aclose(self) -> None:
        close = getattr(self.processor, "aclose", None)  # connectors with HTTP clients
        if self.owns_processor and close is not None:
            await close()
        await self.deliveries.aclose()
        await self.db.dispose()


def build_processor(settings: Settings, db: Database) -> Processor:
    """The configured processor (`KASSA_PROCESSOR`): live mode's."""
    if settings.processor == "stripe":
        if settings.stripe_api_key is None:  # the settings refuse this; kept for callers
            raise ValueError("KASSA_PROCESSOR=stripe needs KASSA_STRIPE_API_KEY")
        return StripeProcessor.connect(
            settings.stripe_api_key.get_secret_value(),
            DatabaseCustomerStore(db, StripeProcessor.name),
            api_base=settings.stripe_api_base,
        )
    return build_simulator(settings, db)


def build_simulator(settings: Settings, db: Database) -> Processor:
    """The simulator: test mode's processor whatever KASSA_PROCESSOR says, and live mode's
    too when it says `simulator`."""
    # The simulator keeps its records in the database, so every process agrees on them.
    simulator = SimulatorProcessor(
        DatabaseSimulatorStore(db),
        delay_seconds=settings.simulator_delay_ms / 1000,
        public_url=settings.public_url or "http://127.0.0.1:8000",
    )
    if not settings.simulator_faults:
        return simulator
    faulty = FaultInjectingProcessor(simulator)  # the settings refuse this in production
    for operation, fault in parse_faults(settings.simulator_faults):
        faulty.plan(operation, fault)
    return faulty


def build_container(
    settings: Settings,
    *,
    processor: Processor | None = None,
    live_processor: Processor | None = None,
    clock: Callable[[], datetime] = utcnow,
    storage: Storage | None = None,
    resolver: Resolver = system_resolver,
    passwords: Passwords | None = None,
) -> Container:
    db = open_database(settings.resolved_database_url, pool_size=settings.database_pool_size)
    instrument_pool(db)
    redis_timeout = settings.redis_timeout_ms / 1000
    storage = storage or create_storage(
        settings.redis_url, prefix=settings.redis_key_prefix, timeout=redis_timeout
    )
    limits = LimitStore(storage, timeout=redis_timeout)
    passwords = passwords or Passwords(
        Argon2Params(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        ).hasher()
    )
    # A processor handed in (a test's double) serves both modes unless `live_processor` is
    # handed in too; built here, test mode gets the simulator and live mode the configured
    # processor (the same simulator when that is the simulator).
    owns_processor = processor is None and live_processor is None
    test_processor = processor or build_simulator(settings, db)
    if live_processor is None:
        live_processor = processor or (
            test_processor if settings.processor == "simulator" else build_processor(settings, db)
        )
    processors = Processors(test=test_processor, live=live_processor)
    secrets = settings.secrets
    vault = Vault(secrets.vault_keys)
    fingerprints = CardFingerprinter(db, vault)
    payments = PaymentService(
        db,
        vault,
        processors,
        clock,
        settings.max_amount,
        processor_timeout=settings.processor_timeout_seconds,
        fingerprints=fingerprints,
        authorization_expiry=timedelta(hours=settings.authorization_expiry_hours),
        require_https_return=settings.env != "development",
        return_pages=ReturnPages(
            settings.public_url or "http://127.0.0.1:8000",
            hmac.new(secrets.jwt_secret, b"kassa-payment-return", "sha256").digest(),
        ),
    )
    webhooks = WebhookService(
        db,
        vault,
        clock,
        event_types=EVENT_TYPES,
        require_https=settings.env == "production",
        allow_private=settings.webhook_allow_private,
        resolver=resolver,
    )
    tokens = TokenCodec(
        secrets.jwt_secret,
        access_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
    )
    auth = AuthService(
        db,
        tokens,
        LoginThrottle(limits),
        clock,
        passwords=passwords,
        password_throttle=LoginThrottle(limits, scope="password"),
    )
    idempotency = IdempotencyService(
        db,
        hmac.new(secrets.jwt_secret, b"kassa-idempotency-fingerprint", "sha256").digest(),
        clock,
        lease=timedelta(seconds=settings.idempotency_lease_seconds),
    )
    payment_lists = PaymentLists(db)
    return Container(
        settings=settings,
        db=db,
        storage=storage,
        limits=limits,
        limiter=RateLimiter(limits, settings.rate_limit),
        processor=live_processor,
        test_processor=test_processor,
        auth=auth,
        # Key secrets are hashed under a key of their own, derived from the JWT secret.
        keys=ApiKeyService(
            db, hmac.new(secrets.jwt_secret, b"kassa-api-key-hash", "sha256").digest(), clock
        ),
        payments=payments,
        refunds=RefundService(
            db, processors, clock, processor_timeout=settings.processor_timeout_seconds
        ),
        transactions=TransactionService(db),
        idempotency=idempotency,
        vault_rotator=VaultRotator(fingerprints, payments, webhooks),
        forms=FormGuard(
            hmac.new(secrets.jwt_secret, b"kassa-form-tokens", "sha256").digest(),
            secure_cookies=settings.env != "development",
            public_url=settings.public_url,
        ),
        checkout=CheckoutService(
            db,
            payments,
            idempotency,
            auth.display_name,
            clock,
            ttl=timedelta(seconds=settings.checkout_session_ttl_seconds),
            max_amount=settings.max_amount,
        ),
        payment_lists=payment_lists,
        refund_lists=RefundLists(db, payment_lists),
        audit_log=AuditLog(db),
        owns_processor=owns_processor,
        events=EventService(db, clock),
        webhooks=webhooks,
        deliveries=WebhookDeliverer(
            db,
            vault,
            clock,
            require_https=settings.env == "production",
            allow_private=settings.webhook_allow_private,
            resolver=resolver,
            concurrency=settings.webhook_concurrency,
            per_endpoint=settings.webhook_endpoint_concurrency,
        ),
    )
