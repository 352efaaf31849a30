"""The built-in simulator: the contract's test-mode table, and one charge per reference."""

from __future__ import annotations

import asyncio

import pytest

from kassa.processors.base import (
    FAILURE_MESSAGES,
    CardData,
    ChargeRequest,
    FailureCode,
    Outcome,
    Processor,
    RefundRequest,
    WalletData,
)
from kassa.processors.simulator import SimulatorProcessor

DECLINES = {
    "4000000000000002": FailureCode.CARD_DECLINED,
    "4000000000009995": FailureCode.INSUFFICIENT_FUNDS,
    "4000000000000069": FailureCode.EXPIRED_CARD,
    "4000000000000127": FailureCode.INCORRECT_CVC,
    "4000000000000119": FailureCode.PROCESSING_ERROR,
}


def card_charge(number: str, reference: str = "ref_1", cvc: str | None = "123") -> ChargeRequest:
    card = CardData(number=number, exp_month=12, exp_year=2099, cvc=cvc)
    return ChargeRequest(
        reference=reference, amount=1050, currency="USD", customer_id="c", card=card
    )


def wallet_charge(token: str, reference: str = "ref_w") -> ChargeRequest:
    wallet = WalletData(wallet="apple_pay", token=token)
    return ChargeRequest(
        reference=reference, amount=1050, currency="USD", customer_id="c", wallet=wallet
    )


def test_simulator_satisfies_the_processor_protocol() -> None:
    processor: Processor = SimulatorProcessor()
    assert processor.name == "simulator"


@pytest.mark.parametrize(
    "number", ["4242424242424242", "5555555555554444", "4000056655665556", "378282246310005"]
)
async def test_approving_cards_succeed(number: str) -> None:
    result = await SimulatorProcessor().charge(card_charge(number))
    assert result.outcome is Outcome.SUCCEEDED
    assert result.failure_code is None
    assert result.failure_message is None
    assert result.processor_reference.startswith("sim_ch_")


@pytest.mark.parametrize(("number", "code"), sorted(DECLINES.items()))
async def test_declining_cards_fail_with_their_code_and_message(
    number: str, code: FailureCode
) -> None:
    result = await SimulatorProcessor().charge(card_charge(number))
    assert result.outcome is Outcome.FAILED
    assert result.failure_code is code
    assert result.failure_message == FAILURE_MESSAGES[code]


async def test_charge_without_a_cvc_is_still_decided_by_the_number() -> None:
    result = await SimulatorProcessor().charge(card_charge("4242424242424242", cvc=None))
    assert result.outcome is Outcome.SUCCEEDED


@pytest.mark.parametrize("token", ["declined", "declined_insufficient", "declinedX"])
async def test_wallet_token_starting_with_declined_is_card_declined(token: str) -> None:
    result = await SimulatorProcessor().charge(wallet_charge(token))
    assert result.outcome is Outcome.FAILED
    assert result.failure_code is FailureCode.CARD_DECLINED


@pytest.mark.parametrize("token", ["tok_ok", "Declined", "x_declined", " declined"])
async def test_any_other_wallet_token_succeeds(token: str) -> None:
    result = await SimulatorProcessor().charge(wallet_charge(token))
    assert result.outcome is Outcome.SUCCEEDED


async def test_the_same_reference_charges_once_and_answers_the_same() -> None:
    simulator = SimulatorProcessor()
    first = await simulator.charge(card_charge("4242424242424242", "ref_same"))
    again = await simulator.charge(card_charge("4242424242424242", "ref_same"))
    assert again == first
    assert simulator.charges_made == 1
    assert simulator.charge_attempts == 2


async def test_concurrent_charges_under_one_reference_charge_once() -> None:
    simulator = SimulatorProcessor()
    results = await asyncio.gather(
        *(simulator.charge(card_charge("4242424242424242", "ref_race")) for _ in range(20))
    )
    assert len({r.processor_reference for r in results}) == 1
    assert simulator.charges_made == 1


async def test_distinct_references_are_distinct_charges() -> None:
    simulator = SimulatorProcessor()
    a = await simulator.charge(card_charge("4242424242424242", "ref_a"))
    b = await simulator.charge(card_charge("4242424242424242", "ref_b"))
    assert a.processor_reference != b.processor_reference
    assert simulator.charges_made == 2


async def test_declined_charges_move_no_money() -> None:
    simulator = SimulatorProcessor()
    await simulator.charge(card_charge("4000000000000002", "ref_d"))
    assert simulator.charges_made == 0


async def test_lookup_finds_a_charge_by_reference_and_nothing_else() -> None:
    simulator = SimulatorProcessor()
    assert await simulator.lookup_charge("ref_1") is None
    made = await simulator.charge(card_charge("4000000000009995", "ref_1"))
    assert await simulator.lookup_charge("ref_1") == made
    assert await simulator.lookup_charge("ref_2") is None


async def test_refund_succeeds_once_per_reference() -> None:
    simulator = SimulatorProcessor()
    request = RefundRequest(
        reference="re_1", charge_reference="sim_ch_x", amount=100, currency="USD"
    )
    first = await simulator.refund(request)
    again = await simulator.refund(request)
    other = await simulator.refund(
        RefundRequest(reference="re_2", charge_reference="sim_ch_x", amount=100, currency="USD")
    )
    assert first.outcome is Outcome.SUCCEEDED
    assert first.processor_reference.startswith("sim_re_")
    assert again == first
    assert other.processor_reference != first.processor_reference


def test_card_data_never_shows_the_number_or_cvc_in_its_repr() -> None:
    card = CardData(number="4242424242424242", exp_month=1, exp_year=2099, cvc="987")
    request = ChargeRequest(reference="r", amount=1, currency="USD", customer_id="c", card=card)
    for text in (repr(card), repr(request), str(request)):
        assert "4242424242424242" not in text
        assert "987" not in text
    wallet = WalletData(wallet="paypal", token="tok_secret")
    assert "tok_secret" not in repr(wallet)
