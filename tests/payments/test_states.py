"""The payment state machine: the table is the contract's diagram, and no sequence of
requests can take a payment anywhere else or refund more than it took."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kassa.payments.models import Payment
from kassa.payments.service import PaymentService, refundable_amount
from kassa.payments.states import (
    CANCELABLE,
    REFUNDABLE,
    STEP_SOURCES,
    TERMINAL,
    TRANSITIONS,
    PaymentStatus,
    ProcessorStep,
    can_transition,
    sources_of,
    status_after_refund,
)
from tests.conftest import Api, card_details, create_payment, register_user

S = PaymentStatus
# The contract's diagram, edge by edge.
DIAGRAM = {
    (S.PENDING, S.PROCESSING),
    (S.PENDING, S.CANCELED),
    (S.PROCESSING, S.COMPLETED),
    (S.PROCESSING, S.FAILED),
    # Capture and 3-D Secure: every step that asks the processor passes through processing.
    (S.PROCESSING, S.REQUIRES_CAPTURE),
    (S.PROCESSING, S.REQUIRES_ACTION),
    (S.PROCESSING, S.CANCELED),
    (S.REQUIRES_CAPTURE, S.PROCESSING),
    (S.REQUIRES_ACTION, S.PROCESSING),
    (S.COMPLETED, S.PARTIALLY_REFUNDED),
    (S.COMPLETED, S.REFUNDED),
    (S.PARTIALLY_REFUNDED, S.REFUNDED),
}
statuses = st.sampled_from(list(PaymentStatus))


def test_statuses_are_exactly_the_contracts() -> None:
    assert {s.value for s in PaymentStatus} == {
        "pending",
        "processing",
        "completed",
        "failed",
        "canceled",
        "partially_refunded",
        "refunded",
        "requires_action",
        "requires_capture",
    }


def test_transition_table_is_exactly_the_contracts_diagram() -> None:
    edges = {(source, target) for source, targets in TRANSITIONS.items() for target in targets}
    assert edges == DIAGRAM
    assert set(TRANSITIONS) == set(PaymentStatus)


def test_terminal_states_are_failed_canceled_and_refunded() -> None:
    assert frozenset({S.FAILED, S.CANCELED, S.REFUNDED}) == TERMINAL


def test_only_completed_and_partially_refunded_payments_are_refundable() -> None:
    assert frozenset({S.COMPLETED, S.PARTIALLY_REFUNDED}) == REFUNDABLE


def test_each_processor_step_starts_only_where_the_contract_allows() -> None:
    assert {
        ProcessorStep.CHARGE: {S.PENDING},
        ProcessorStep.CAPTURE: {S.REQUIRES_CAPTURE},
        ProcessorStep.VOID: {S.REQUIRES_CAPTURE, S.REQUIRES_ACTION},
    } == STEP_SOURCES
    assert frozenset({S.PENDING, S.REQUIRES_ACTION, S.REQUIRES_CAPTURE}) == CANCELABLE
    for sources in STEP_SOURCES.values():
        assert all(can_transition(source, S.PROCESSING) for source in sources)


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        (S.PENDING, set()),
        (S.PROCESSING, {S.PENDING, S.REQUIRES_ACTION, S.REQUIRES_CAPTURE}),
        (S.CANCELED, {S.PENDING, S.PROCESSING}),
        (S.REQUIRES_CAPTURE, {S.PROCESSING}),
        (S.REQUIRES_ACTION, {S.PROCESSING}),
        (S.COMPLETED, {S.PROCESSING}),
        (S.FAILED, {S.PROCESSING}),
        (S.PARTIALLY_REFUNDED, {S.COMPLETED}),
        (S.REFUNDED, {S.COMPLETED, S.PARTIALLY_REFUNDED}),
    ],
)
def test_sources_of_lists_every_state_one_step_before(
    target: PaymentStatus, sources: set[PaymentStatus]
) -> None:
    assert sources_of(target) == sources


@given(statuses, statuses)
def test_can_transition_agrees_with_the_diagram_and_sources_of(
    source: PaymentStatus, target: PaymentStatus
) -> None:
    assert can_transition(source, target) == ((source, target) in DIAGRAM)
    assert (source in sources_of(target)) == can_transition(source, target)


@given(statuses)
def test_nothing_leaves_a_terminal_state(status: PaymentStatus) -> None:
    if status in TERMINAL:
        assert not any(can_transition(status, target) for target in PaymentStatus)


@given(st.integers(1, 10**12).flatmap(lambda a: st.tuples(st.just(a), st.integers(1, a))))
def test_status_after_refund_is_refunded_exactly_when_all_is_refunded(
    amounts: tuple[int, int],
) -> None:
    amount, refunded = amounts
    expected = S.REFUNDED if refunded == amount else S.PARTIALLY_REFUNDED
    assert status_after_refund(amount, refunded) is expected


@pytest.mark.parametrize(("amount", "refunded"), [(100, 0), (100, 101), (100, -1)])
def test_status_after_refund_refuses_totals_outside_the_amount(amount: int, refunded: int) -> None:
    with pytest.raises(ValueError, match="refunded total"):
        status_after_refund(amount, refunded)


# The refund bookkeeping, driven by random reserve/release sequences --------------------------

NOW = datetime(2030, 1, 1, tzinfo=UTC)


class RefundBookkeeping(RuleBasedStateMachine):
    """`reserve_refund`/`release_refund` on a completed payment, against a plain model."""

    def __init__(self) -> None:
        super().__init__()
        self.payment: Payment | None = None
        self.held: list[int] = []
        self.refunded = 0

    @precondition(lambda self: self.payment is None)
    @rule(amount=st.integers(1, 10_000))
    def complete(self, amount: int) -> None:
        self.payment = Payment(
            id=uuid.uuid4(),
            status=S.COMPLETED.value,
            amount=amount,
            amount_refunded=0,
            amount_refund_pending=0,
        )

    @precondition(lambda self: self.payment is not None)
    @rule(wanted=st.integers(-5, 12_000))
    def reserve(self, wanted: int) -> None:
        assert self.payment is not None
        left = self.payment.amount - self.refunded - sum(self.held)
        if 0 < wanted <= left:
            PaymentService.reserve_refund(self.payment, wanted, NOW)
            self.held.append(wanted)
        else:
            with pytest.raises(ValueError, match="refundable"):
                PaymentService.reserve_refund(self.payment, wanted, NOW)

    @precondition(lambda self: self.payment is not None and bool(self.held))
    @rule(data=st.data(), succeeded=st.booleans())
    def release(self, data: st.DataObject, succeeded: bool) -> None:
        assert self.payment is not None
        amount = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        PaymentService.release_refund(self.payment, amount, succeeded, NOW)
        if succeeded:
            self.refunded += amount

    @invariant()
    def amounts_match_the_model(self) -> None:
        if self.payment is None:
            return
        assert self.payment.amount_refunded == self.refunded
        assert self.payment.amount_refund_pending == sum(self.held)
        assert 0 <= self.refunded + sum(self.held) <= self.payment.amount
        assert refundable_amount(self.payment) == self.payment.amount - self.refunded - sum(
            self.held
        )

    @invariant()
    def status_matches_the_model(self) -> None:
        if self.payment is None:
            return
        if self.refunded == 0:
            expected = S.COMPLETED
        elif self.refunded == self.payment.amount:
            expected = S.REFUNDED
        else:
            expected = S.PARTIALLY_REFUNDED
        assert self.payment.status == expected.value


RefundBookkeeping.TestCase.settings = settings(max_examples=60, stateful_step_count=20)
test_refund_bookkeeping_never_refunds_more_than_the_amount = RefundBookkeeping.TestCase


# The whole HTTP app, driven by random request sequences ----------------------------------

actions = st.lists(
    st.one_of(
        st.just(("process", None)),
        st.just(("cancel", None)),
        st.tuples(st.just("capture"), st.none() | st.integers(1, 1200)),
        st.tuples(st.just("refund"), st.none() | st.integers(1, 1200)),
    ),
    max_size=8,
)


class PaymentModel:
    """What the contract says each request does to one payment (with manual capture: process
    authorizes, capture takes all or part of it once)."""

    def __init__(self, amount: int, declines: bool, manual: bool = False) -> None:
        self.amount = amount
        self.declines = declines
        self.manual = manual
        self.status = S.PENDING
        self.captured = 0
        self.refunded = 0

    def expect(self, action: str, wanted: int | None) -> tuple[int, str | None]:
        """The expected HTTP status and problem code of `action`; applies it to the model."""
        if action == "process":
            if self.status is not S.PENDING:
                return 409, "invalid_state"
            if self.declines:
                self.status = S.FAILED
            elif self.manual:
                self.status = S.REQUIRES_CAPTURE
            else:
                self.status, self.captured = S.COMPLETED, self.amount
            return 200, None
        if action == "cancel":
            if self.status not in {S.PENDING, S.REQUIRES_CAPTURE}:
                return 409, "invalid_state"
            self.status = S.CANCELED
            return 200, None
        if action == "capture":
            if self.status is not S.REQUIRES_CAPTURE:
                return 409, "invalid_state"
            amount = self.amount if wanted is None else wanted
            if amount > self.amount:
                return 422, "amount_exceeds_capturable"
            self.status, self.captured = S.COMPLETED, amount
            return 200, None
        if self.status not in REFUNDABLE:
            return 409, "invalid_state"
        left = self.captured - self.refunded
        amount = left if wanted is None else wanted
        if amount > left:
            return 422, "amount_exceeds_refundable"
        self.refunded += amount
        self.status = status_after_refund(self.captured, self.refunded)
        return 201, None


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    amount=st.integers(1, 1000),
    declines=st.booleans(),
    manual=st.booleans(),
    steps=actions,
)
async def test_random_request_sequences_follow_the_state_machine(
    api: Api, amount: int, declines: bool, manual: bool, steps: list[tuple[str, Any]]
) -> None:
    user = await register_user(api.client)
    number = "4000000000000002" if declines else "4242424242424242"
    payment = await create_payment(
        api.client,
        user,
        amount=amount,
        details=card_details(number),
        capture="manual" if manual else "automatic",
    )
    model = PaymentModel(amount, declines, manual)
    base = f"/api/payments/{payment['id']}"
    for action, wanted in steps:
        if action == "process":
            response = await api.client.post(
                "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
            )
        elif action == "cancel":
            response = await api.client.post(f"{base}/cancel", headers=user.headers)
        elif action == "capture":
            body = {} if wanted is None else {"amount": wanted}
            response = await api.client.post(f"{base}/capture", json=body, headers=user.headers)
        else:
            body = {} if wanted is None else {"amount": wanted}
            response = await api.client.post(f"{base}/refund", json=body, headers=user.headers)
        expected_status, expected_code = model.expect(action, wanted)
        assert response.status_code == expected_status, (action, wanted, response.text)
        if expected_code is not None:
            assert response.json()["code"] == expected_code
        status = (await api.client.get(f"{base}/status", headers=user.headers)).json()
        assert status["status"] == model.status.value, (action, wanted)
        assert status["amount_refunded"] == model.refunded
        assert status["amount_captured"] == model.captured
        assert 0 <= status["amount_refunded"] <= status["amount_captured"] <= status["amount"]
        assert status["amount"] == amount
