"""Both processors behind one fixture, so the behaviour they share is tested once for each.

`backend` is the simulator or the Stripe connector talking to localstripe (a stateful fake
Stripe started here on a loopback port, one per test session). What localstripe cannot do is
never relied on: it ignores idempotency keys, has no search API, and declines a card only
when it is attached to a customer (always `card_declined`) or charged with 4000000000000341.

This package gets databases of its own, so reconciliation here (which settles every stale
payment of a database) meets only this package's payments.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from kassa.db import Database, create_engine
from kassa.payments.service import charge_reference
from kassa.processors.base import Processor
from kassa.processors.customers import CustomerStore, MemoryCustomerStore
from kassa.processors.simulator import SimulatorProcessor
from kassa.processors.simulator_store import (
    DatabaseSimulatorStore,
    SimulatorCharge,
    SimulatorRefund,
)
from kassa.processors.stripe import StripeProcessor
from tests.conftest import migrated_postgres, migrated_sqlite

STRIPE_TEST_KEY = "sk_test_kassa_localstripe"
# The one wrapper the tests, `make sandbox` and the sandbox image all run.
LOCALSTRIPE_SCRIPT = Path(__file__).parents[2] / "deploy/localstripe/kassa_localstripe.py"


# Databases of this package -----------------------------------------------------------------


@pytest.fixture(scope="package")
def processors_sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return migrated_sqlite(tmp_path_factory, "processors")


@pytest.fixture(scope="package")
def processors_postgres_url() -> Iterator[str]:
    with migrated_postgres() as url:
        yield url


@pytest.fixture(scope="package", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"processors_{request.param}_url"))


@pytest.fixture
async def store_db(database_url: str) -> AsyncIterator[Database]:
    """The database handle for what a processor keeps on its side (simulator records,
    customers)."""
    db = Database(create_engine(database_url))
    yield db
    await db.dispose()


# localstripe -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, str(LOCALSTRIPE_SCRIPT), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            pytest.fail(f"localstripe did not start: {line!r}", pytrace=False)
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


class LocalStripe:
    """Reads localstripe's own records: what really happened at the fake Stripe."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.base_url) as client:
            response = await client.get(
                path, params=params, headers={"Authorization": f"Bearer {STRIPE_TEST_KEY}"}
            )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def succeeded_charges(self, customer: str) -> list[dict[str, Any]]:
        listed = await self.get("/v1/charges", customer=customer, limit=100)
        return [c for c in listed["data"] if c["status"] == "succeeded"]

    async def refunds(self, intent_id: str) -> list[dict[str, Any]]:
        listed = await self.get("/v1/refunds", payment_intent=intent_id, limit=100)
        return list(listed["data"])


def stripe_processor(
    localstripe_url: str,
    customers: CustomerStore | None = None,
    *,
    api_base: str | None = None,
    **options: Any,
) -> StripeProcessor:
    options.setdefault("max_network_retries", 0)
    return StripeProcessor.connect(
        STRIPE_TEST_KEY,
        customers or MemoryCustomerStore(),
        api_base=api_base or localstripe_url,
        **options,
    )


# Backends ----------------------------------------------------------------------------------


@dataclass
class Backend:
    """One processor under the shared suite, with the test inputs it understands and a way
    to ask it what really moved (never what kassa believes)."""

    name: str
    approved_card: str
    declined_card: str  # fails with `card_declined` on both processors
    # Declined by the charge itself (localstripe declines most cards when attaching them).
    declined_on_charge_card: str
    wallet_token: str
    declined_wallet_token: str
    # Real Stripe and the simulator charge a card sent without its CVC (as on a retry by
    # reconciliation, after kassa destroyed the CVC); localstripe refuses it.
    takes_cards_without_cvc: bool = True
    localstripe: LocalStripe | None = None
    _made: list[tuple[Processor, CustomerStore | None]] = field(default_factory=list)
    _url: str = ""

    def processor(self, db: Database | None = None) -> Processor:
        """A fresh processor; with `db`, it keeps its own records in the database."""
        made: Processor
        customers: CustomerStore | None = None
        if self.name == "simulator":
            made = SimulatorProcessor(DatabaseSimulatorStore(db) if db else None)
        else:
            customers = MemoryCustomerStore()
            made = stripe_processor(self._url, customers)
        self._made.append((made, customers))
        return made

    async def customer_of(self, user_id: str) -> str:
        for _, customers in self._made:
            if customers is not None and (found := await customers.get(user_id)):
                return found
        raise AssertionError(f"no Stripe customer for user {user_id}")

    async def money_moved(
        self,
        user_id: str,
        payment_ids: list[str],
        db: Database | None = None,
    ) -> int:
        """Succeeded charges the processor holds for these payments."""
        if self.localstripe is not None:
            return len(await self.localstripe.succeeded_charges(await self.customer_of(user_id)))
        assert db is not None
        references = [charge_reference(uuid.UUID(p)) for p in payment_ids]
        count = await db.scalar(
            select(func.count())
            .select_from(SimulatorCharge)
            .where(SimulatorCharge.reference.in_(references))
            .where(SimulatorCharge.outcome == "succeeded")
        )
        return int(count or 0)

    async def refunds_made(self, processor_reference: str, db: Database | None = None) -> list[int]:
        """The amounts refunded at the processor for one charge."""
        if self.localstripe is not None:
            return sorted(r["amount"] for r in await self.localstripe.refunds(processor_reference))
        assert db is not None
        rows = await db.tuples(
            select(SimulatorRefund.amount).where(
                SimulatorRefund.charge_reference == processor_reference
            )
        )
        return sorted(amount for (amount,) in rows)

    async def aclose(self) -> None:
        for made, _ in self._made:
            if isinstance(made, StripeProcessor):
                await made.aclose()


@pytest.fixture(params=["simulator", "stripe"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "simulator":
        made = Backend(
            name="simulator",
            approved_card="4242424242424242",
            declined_card="4000000000000002",
            declined_on_charge_card="4000000000000002",
            wallet_token=f"tok_wallet_{uuid.uuid4().hex[:8]}",
            declined_wallet_token="declined_by_issuer",
        )
    else:
        url = str(request.getfixturevalue("localstripe_url"))
        made = Backend(
            name="stripe",
            approved_card="4242424242424242",
            declined_card="4000000000000002",
            declined_on_charge_card="4000000000000341",
            # Stripe's test PaymentMethods, as Stripe.js would hand them to a client.
            wallet_token="pm_card_visa",
            declined_wallet_token="pm_card_visa_chargeDeclined",
            takes_cards_without_cvc=False,
            localstripe=LocalStripe(url),
            _url=url,
        )
    yield made
    await made.aclose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The SDK's httpx client posts its form body as `data=`, which httpx deprecates; it is
    # the SDK's business and says nothing about kassa.
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(
                pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
            )
