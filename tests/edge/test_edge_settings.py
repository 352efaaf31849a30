"""The edge's settings: defaults, and one-line refusals of bad values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kassa.settings import SettingsError, load_settings
from tests.conftest import TEST_VAULT_KEY


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.upper().startswith("KASSA_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(environ: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_limit_users_keep_cors_off_and_trust_no_proxy() -> None:
    settings = load_settings({})
    assert settings.user_rate_limit == "1000/15minutes"
    assert settings.redis_key_prefix == "kassa"
    assert settings.cors_origin_list == []
    assert settings.trusted_proxy_networks == ()


def test_lists_are_read_comma_separated() -> None:
    settings = load_settings(
        {
            "KASSA_CORS_ORIGINS": "https://a.example.com, http://localhost:3000",
            "KASSA_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1, 2001:db8::/32",
        }
    )
    assert settings.cors_origin_list == ["https://a.example.com", "http://localhost:3000"]
    assert [str(n) for n in settings.trusted_proxy_networks] == [
        "10.0.0.0/8",
        "192.0.2.1/32",
        "2001:db8::/32",
    ]


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("KASSA_USER_RATE_LIMIT", "lots", "rate"),
        ("KASSA_REDIS_KEY_PREFIX", "has space", "KASSA_REDIS_KEY_PREFIX"),
        ("KASSA_REDIS_KEY_PREFIX", "", "KASSA_REDIS_KEY_PREFIX"),
        ("KASSA_CORS_ORIGINS", "https://a.example.com/path", "https://a.example.com/path"),
        ("KASSA_CORS_ORIGINS", "a.example.com", "a.example.com"),
        ("KASSA_TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal", "proxy.internal"),
        ("KASSA_TRUSTED_PROXIES", "10.0.0.0/33", "10.0.0.0/33"),
    ],
)
def test_bad_edge_settings_are_refused_in_one_line(name: str, value: str, shown: str) -> None:
    message = refused({name: value})
    assert name in message
    assert shown in message


def production(**overrides: str) -> dict[str, str]:
    env = {
        "KASSA_ENV": "production",
        "KASSA_JWT_SECRET": "production-" + "s" * 40,
        "KASSA_VAULT_KEYS": TEST_VAULT_KEY,
        "KASSA_DATABASE_URL": "postgresql+asyncpg://kassa@db.internal/kassa",
    }
    return env | overrides


@pytest.mark.parametrize("proxies", ["0.0.0.0/0", "::/0", "10.0.0.1,0.0.0.0/0"])
def test_production_refuses_trusting_every_address(proxies: str) -> None:
    message = refused(production(KASSA_TRUSTED_PROXIES=proxies))
    assert "KASSA_TRUSTED_PROXIES" in message


def test_development_may_trust_every_address() -> None:
    assert load_settings({"KASSA_TRUSTED_PROXIES": "0.0.0.0/0"}).trusted_proxy_networks


def test_production_refuses_a_plain_http_stripe_api_base() -> None:
    stripe = {"KASSA_PROCESSOR": "stripe", "KASSA_STRIPE_API_KEY": "sk_live_" + "k" * 24}
    message = refused(production(**stripe, KASSA_STRIPE_API_BASE="http://stripe.internal"))
    assert "KASSA_STRIPE_API_BASE" in message
    assert "https" in message
    assert "sk_live_" not in message
    base = "https://stripe.internal"
    assert load_settings(production(**stripe, KASSA_STRIPE_API_BASE=base)).stripe_api_base == base
