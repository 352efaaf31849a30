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
        "KASSA_JWT_SECRET": "production-G4_MTS4BREydFpMtbplphLn88VbLNtVjyUJ4etuo5MKMJN3k",
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


# Production guards: what would switch a protection off is refused -----------------------


@pytest.mark.parametrize(
    "proxies",
    [
        "0.0.0.0/1,128.0.0.0/1",  # everyone, in two halves
        "0.0.0.0/2,64.0.0.0/2,128.0.0.0/2,192.0.0.0/2",
        "11.0.0.0/7",  # a public /7: twice a /8
        "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10",
        "::/1",
        "2001:db8::/16",
    ],
)
def test_production_refuses_trusting_more_than_a_private_networks_worth(proxies: str) -> None:
    message = refused(production(KASSA_TRUSTED_PROXIES=proxies))
    assert "KASSA_TRUSTED_PROXIES" in message
    assert "private network" in message


@pytest.mark.parametrize(
    "proxies",
    [
        "10.0.0.0/8",
        "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16",  # every RFC 1918 network
        "173.245.48.0/20,103.21.244.0/22,104.16.0.0/13,172.64.0.0/13,2400:cb00::/32",  # a CDN
        "fd12:3456:789a::/48,10.1.2.3",
    ],
)
def test_production_accepts_proxy_lists_of_private_or_cdn_size(proxies: str) -> None:
    settings = load_settings(production(KASSA_TRUSTED_PROXIES=proxies))
    assert settings.trusted_proxy_networks


@pytest.mark.parametrize("rate", ["0/second", "0/15minutes", "100/minute;0/second"])
def test_a_rate_limit_of_zero_is_refused_in_any_environment(rate: str) -> None:
    for name in ("KASSA_RATE_LIMIT", "KASSA_USER_RATE_LIMIT"):
        message = refused({name: rate})
        assert name in message
        assert "zero" in message


@pytest.mark.parametrize(
    "secret",
    [
        "a" * 32,
        "a" * 64,
        "ab" * 16,
        "0123456789abcdef" * 2,  # a repeated pattern, however many distinct bytes
        "password" * 4,
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",  # one byte away from all the same
    ],
)
def test_production_refuses_a_jwt_secret_with_almost_no_entropy(secret: str) -> None:
    message = refused(production(KASSA_JWT_SECRET=secret))
    assert "KASSA_JWT_SECRET" in message
    assert "entropy" in message
    assert secret not in message


@pytest.mark.parametrize(
    "secret",
    [
        "9f86d081884c7d659a2feaa0c55ad015",  # 16 random bytes as hex (openssl rand -hex 16)
        "d2c0f5e1b7a94c3e8f6a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6",
        "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5",
    ],
)
def test_production_accepts_a_generated_jwt_secret(secret: str) -> None:
    assert load_settings(production(KASSA_JWT_SECRET=secret)).env == "production"


def test_development_keeps_its_test_secrets() -> None:
    assert load_settings({"KASSA_JWT_SECRET": "a" * 32}).secrets.jwt_secret == b"a" * 32


@pytest.mark.parametrize("origins", ["*", "https://shop.example.com, *"])
def test_production_refuses_a_wildcard_cors_origin(origins: str) -> None:
    message = refused(production(KASSA_CORS_ORIGINS=origins))
    assert "KASSA_CORS_ORIGINS" in message
    assert "*" in message


def test_development_may_allow_every_cors_origin() -> None:
    assert load_settings({"KASSA_CORS_ORIGINS": "*"}).cors_origin_list == ["*"]


def test_production_refuses_argon2_weaker_than_owasps_table() -> None:
    message = refused(production(KASSA_ARGON2_MEMORY_KIB="8", KASSA_ARGON2_TIME_COST="1"))
    assert "KASSA_ARGON2_MEMORY_KIB" in message
    weakest_listed = production(KASSA_ARGON2_MEMORY_KIB="7168", KASSA_ARGON2_TIME_COST="5")
    assert load_settings(weakest_listed).argon2_time_cost == 5


@pytest.mark.parametrize("value", ["0", "9", "5001", "fast"])
def test_a_bad_redis_timeout_is_refused(value: str) -> None:
    assert "KASSA_REDIS_TIMEOUT_MS" in refused({"KASSA_REDIS_TIMEOUT_MS": value})
