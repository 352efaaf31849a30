"""The shutdown grace period outlasts what a request may spend at the processor."""

from __future__ import annotations

import pytest

from kassa.settings import SettingsError, load_settings
from tests.conftest import TEST_VAULT_KEY

BASE = {"KASSA_JWT_SECRET": "s" * 40, "KASSA_VAULT_KEYS": TEST_VAULT_KEY}


def test_the_default_grace_outlasts_two_processor_calls() -> None:
    settings = load_settings(BASE)
    assert settings.processor_timeout_seconds == 15
    assert settings.shutdown_grace == 35  # prepare + charge (Stripe), 5 s to record them


def test_the_default_grace_follows_the_processor_timeout() -> None:
    assert load_settings(BASE | {"KASSA_PROCESSOR_TIMEOUT_SECONDS": "4"}).shutdown_grace == 13


@pytest.mark.parametrize("grace", ["15", "3"])
def test_a_grace_not_longer_than_the_processor_timeout_is_refused(grace: str) -> None:
    with pytest.raises(SettingsError, match="must be longer than KASSA_PROCESSOR_TIMEOUT"):
        load_settings(BASE | {"KASSA_SHUTDOWN_GRACE_SECONDS": grace})


def test_a_processor_timeout_past_the_idempotency_lease_is_refused() -> None:
    with pytest.raises(SettingsError, match="KASSA_PROCESSOR_TIMEOUT_SECONDS"):
        load_settings(BASE | {"KASSA_PROCESSOR_TIMEOUT_SECONDS": "40"})
