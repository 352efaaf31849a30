"""Settings: defaults, generated development secrets, and one-line refusals."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kassa.settings import JWT_SECRET_FILE, VAULT_KEYS_FILE, SettingsError, load_settings
from tests.conftest import TEST_VAULT_KEY

JWT_SECRET = "s3cret-G4_MTS4BREydFpMtbplphLn88VbLNtVjyUJ4etuo5MKMJN3k"
PG_URL = "postgresql+asyncpg://kassa:pw@db.internal:5432/kassa"


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory, and a process environment without KASSA_ variables."""
    for name in list(os.environ):
        if name.upper().startswith("KASSA_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(environ: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    message = str(caught.value)
    assert message
    assert "\n" not in message
    assert "Traceback" not in message
    return message


# defaults --------------------------------------------------------------------------------


def test_defaults_use_a_sqlite_file_kassa_db_in_the_working_directory() -> None:
    settings = load_settings({})
    assert settings.resolved_database_url == "sqlite+aiosqlite:///kassa.db"
    assert settings.is_sqlite


def test_default_rate_limit_is_100_per_15_minutes() -> None:
    assert load_settings({}).rate_limit == "100/15minutes"


def test_default_max_amount_is_99999999() -> None:
    assert load_settings({}).max_amount == 99_999_999


def test_default_processor_is_the_simulator() -> None:
    assert load_settings({}).processor == "simulator"


def test_default_logs_are_json_at_info() -> None:
    settings = load_settings({})
    assert settings.log_format == "json"
    assert settings.log_level == "INFO"


def test_default_environment_is_development_without_redis_or_proxies() -> None:
    settings = load_settings({})
    assert settings.env == "development"
    assert settings.redis_url is None
    assert settings.trusted_proxies == ""
    assert settings.webhook_allow_private is False


def test_settings_are_read_from_the_given_environment() -> None:
    settings = load_settings(
        {
            "KASSA_MAX_AMOUNT": "500",
            "KASSA_RATE_LIMIT": "10/minute",
            "KASSA_LOG_FORMAT": "console",
            "KASSA_LOG_LEVEL": "debug",
            "KASSA_WEBHOOK_ALLOW_PRIVATE": "true",
            "KASSA_DATABASE_URL": PG_URL,
        }
    )
    assert settings.max_amount == 500
    assert settings.rate_limit == "10/minute"
    assert settings.log_format == "console"
    assert settings.log_level == "DEBUG"
    assert settings.webhook_allow_private is True
    assert settings.resolved_database_url == PG_URL
    assert not settings.is_sqlite


def test_variables_without_the_kassa_prefix_are_ignored() -> None:
    settings = load_settings({"PATH": "/bin", "MAX_AMOUNT": "abc", "DATABASE_URL": "mysql://x"})
    assert settings.max_amount == 99_999_999


def test_no_argument_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KASSA_MAX_AMOUNT", "1234")
    assert load_settings().max_amount == 1234


def test_an_explicit_environment_ignores_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KASSA_PROCESSOR", "stripe")
    monkeypatch.setenv("KASSA_BOGUS", "1")
    assert load_settings({}).processor == "simulator"


# generated secrets -----------------------------------------------------------------------


def test_generated_secrets_are_files_beside_the_database_with_mode_0600(workdir: Path) -> None:
    load_settings({})
    for name in (JWT_SECRET_FILE, VAULT_KEYS_FILE):
        path = workdir / name
        assert path.is_file(), name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_generated_secret_files_are_private_even_with_a_lax_umask(workdir: Path) -> None:
    previous = os.umask(0)
    try:
        load_settings({})
    finally:
        os.umask(previous)
    for name in (JWT_SECRET_FILE, VAULT_KEYS_FILE):
        assert stat.S_IMODE((workdir / name).stat().st_mode) == 0o600, name


def test_generated_jwt_secret_is_at_least_32_bytes() -> None:
    assert len(load_settings({}).secrets.jwt_secret) >= 32


def test_generated_secrets_are_created_once_and_reused(workdir: Path) -> None:
    first = load_settings({}).secrets
    files = {name: (workdir / name).read_text() for name in (JWT_SECRET_FILE, VAULT_KEYS_FILE)}
    second = load_settings({}).secrets
    assert second.jwt_secret == first.jwt_secret
    assert second.vault_keys == first.vault_keys
    assert {n: (workdir / n).read_text() for n in files} == files


def test_generated_secrets_follow_the_sqlite_file(workdir: Path) -> None:
    data = workdir / "data"
    data.mkdir()
    load_settings({"KASSA_DATABASE_URL": f"sqlite+aiosqlite:///{data / 'shop.db'}"})
    assert (data / JWT_SECRET_FILE).is_file()
    assert (data / VAULT_KEYS_FILE).is_file()
    assert not (workdir / JWT_SECRET_FILE).exists()


def test_given_secrets_are_used_and_no_files_are_made(workdir: Path) -> None:
    settings = load_settings({"KASSA_JWT_SECRET": JWT_SECRET, "KASSA_VAULT_KEYS": TEST_VAULT_KEY})
    assert settings.secrets.jwt_secret == JWT_SECRET.encode()
    assert [key.kid for key in settings.secrets.vault_keys] == ["test"]
    assert not (workdir / JWT_SECRET_FILE).exists()
    assert not (workdir / VAULT_KEYS_FILE).exists()


def test_secrets_do_not_show_in_the_settings_repr() -> None:
    settings = load_settings({"KASSA_JWT_SECRET": JWT_SECRET, "KASSA_VAULT_KEYS": TEST_VAULT_KEY})
    text = repr(settings) + str(settings)
    assert JWT_SECRET not in text
    assert TEST_VAULT_KEY.split(":")[1] not in text


def test_a_corrupt_generated_vault_keys_file_is_refused_in_one_line(workdir: Path) -> None:
    (workdir / VAULT_KEYS_FILE).write_text("kid1:not-a-real-key-material\n")
    message = refused({})
    assert VAULT_KEYS_FILE in message
    assert "not-a-real-key-material" not in message


def test_a_sqlite_file_in_a_missing_directory_is_refused_in_one_line(workdir: Path) -> None:
    message = refused({"KASSA_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/missing/x.db"})
    assert "missing" in message


# unknown and invalid settings ------------------------------------------------------------


@pytest.mark.parametrize("name", ["KASSA_BOGUS", "KASSA_JWT_SECRETS", "kassa_max_amout"])
def test_unknown_kassa_variable_is_refused_by_name(name: str) -> None:
    message = refused({name: "1"})
    assert name.upper() in message.upper()


def test_setting_names_are_case_insensitive() -> None:
    assert load_settings({"kassa_max_amount": "77"}).max_amount == 77


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KASSA_MAX_AMOUNT", "abc"),
        ("KASSA_MAX_AMOUNT", "0"),
        ("KASSA_MAX_AMOUNT", "-5"),
        ("KASSA_MAX_AMOUNT", "10.5"),
        ("KASSA_RATE_LIMIT", "lots"),
        ("KASSA_RATE_LIMIT", ""),
        ("KASSA_LOG_FORMAT", "xml"),
        ("KASSA_LOG_LEVEL", "chatty"),
        ("KASSA_PROCESSOR", "paypal"),
        ("KASSA_DATABASE_URL", "mysql://x"),
        ("KASSA_DATABASE_URL", "postgresql://sync-driver/x"),
        ("KASSA_DATABASE_URL", "not a url"),
        ("KASSA_ENV", "staging"),
        ("KASSA_WEBHOOK_ALLOW_PRIVATE", "maybe"),
        ("KASSA_REDIS_URL", "http://cache:6379"),
    ],
)
def test_invalid_value_is_refused_in_one_line_naming_the_setting(name: str, value: str) -> None:
    message = refused({name: value})
    assert name in message


@pytest.mark.parametrize(
    "secret", ["short-secret", "x" * 31, "ü" * 15], ids=["short", "31-bytes", "15-umlauts"]
)
def test_short_jwt_secret_is_refused_without_showing_it(secret: str) -> None:
    message = refused({"KASSA_JWT_SECRET": secret})
    assert "KASSA_JWT_SECRET" in message
    assert "32" in message
    assert secret not in message


def test_jwt_secret_of_32_bytes_is_accepted() -> None:
    settings = load_settings({"KASSA_JWT_SECRET": "k" * 32})
    assert settings.secrets.jwt_secret == b"k" * 32


@pytest.mark.parametrize(
    "keys",
    [
        "not-base64-at-all!!",
        "kid:" + "A" * 10,
        TEST_VAULT_KEY + "," + TEST_VAULT_KEY,
        TEST_VAULT_KEY + ",",
        "bad kid!:" + TEST_VAULT_KEY.split(":")[1],
        "",
    ],
    ids=["garbage", "short-key", "repeated-kid", "empty-entry", "bad-kid", "empty"],
)
def test_bad_vault_keys_are_refused_without_showing_them(keys: str) -> None:
    message = refused({"KASSA_VAULT_KEYS": keys})
    assert "KASSA_VAULT_KEYS" in message
    key_material = TEST_VAULT_KEY.split(":")[1]
    assert key_material not in message
    if keys:
        assert keys not in message


def test_several_vault_keys_are_accepted_first_one_encrypts() -> None:
    other = "old:" + TEST_VAULT_KEY.split(":")[1].replace("a", "b")
    settings = load_settings({"KASSA_VAULT_KEYS": f"{TEST_VAULT_KEY},{other}"})
    assert [key.kid for key in settings.secrets.vault_keys] == ["test", "old"]


# production ------------------------------------------------------------------------------


def production(**overrides: str) -> dict[str, str]:
    env = {
        "KASSA_ENV": "production",
        "KASSA_JWT_SECRET": JWT_SECRET,
        "KASSA_VAULT_KEYS": TEST_VAULT_KEY,
        "KASSA_DATABASE_URL": PG_URL,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v}


def test_production_with_real_secrets_and_postgresql_loads(workdir: Path) -> None:
    settings = load_settings(production())
    assert settings.env == "production"
    assert not (workdir / JWT_SECRET_FILE).exists()


def test_production_refuses_a_generated_jwt_secret(workdir: Path) -> None:
    message = refused(production(KASSA_JWT_SECRET=""))
    assert "KASSA_JWT_SECRET" in message
    assert not (workdir / JWT_SECRET_FILE).exists()


def test_production_refuses_generated_vault_keys(workdir: Path) -> None:
    message = refused(production(KASSA_VAULT_KEYS=""))
    assert "KASSA_VAULT_KEYS" in message
    assert not (workdir / VAULT_KEYS_FILE).exists()


@pytest.mark.parametrize("url", ["", "sqlite+aiosqlite:///prod.db"], ids=["default", "explicit"])
def test_production_refuses_sqlite(url: str) -> None:
    message = refused(production(KASSA_DATABASE_URL=url))
    assert "SQLite" in message


def test_production_refusal_never_shows_a_secret() -> None:
    message = refused(production(KASSA_DATABASE_URL="sqlite+aiosqlite:///prod.db"))
    assert JWT_SECRET not in message
    assert TEST_VAULT_KEY not in message


# .env ------------------------------------------------------------------------------------


def test_dotenv_values_are_read(workdir: Path) -> None:
    (workdir / ".env").write_text('KASSA_MAX_AMOUNT=4321\nKASSA_LOG_FORMAT="console"\n')
    settings = load_settings({})
    assert settings.max_amount == 4321
    assert settings.log_format == "console"


def test_environment_wins_over_dotenv(workdir: Path) -> None:
    (workdir / ".env").write_text("KASSA_MAX_AMOUNT=4321\n")
    assert load_settings({"KASSA_MAX_AMOUNT": "99"}).max_amount == 99


def test_unknown_kassa_key_in_dotenv_is_refused(workdir: Path) -> None:
    (workdir / ".env").write_text("KASSA_MAX_AMOUNT=5\nKASSA_TYPO=1\n")
    assert "KASSA_TYPO" in refused({})


def test_unknown_kassa_key_in_dotenv_is_refused_when_reading_the_process_environment(
    workdir: Path,
) -> None:
    (workdir / ".env").write_text("KASSA_TYPO=1\n")
    with pytest.raises(SettingsError, match="KASSA_TYPO"):
        load_settings()


def test_invalid_value_in_dotenv_is_refused_in_one_line(workdir: Path) -> None:
    (workdir / ".env").write_text("KASSA_JWT_SECRET=tooshort-dotenv-secret\n")
    message = refused({})
    assert "KASSA_JWT_SECRET" in message
    assert "tooshort-dotenv-secret" not in message


def test_other_keys_in_dotenv_are_ignored(workdir: Path) -> None:
    (workdir / ".env").write_text("DATABASE_URL=mysql://elsewhere\nSECRET=1\n")
    assert load_settings({}).resolved_database_url == "sqlite+aiosqlite:///kassa.db"


# test hooks ------------------------------------------------------------------------------


def test_simulator_faults_are_refused_in_production() -> None:
    message = refused(production(KASSA_SIMULATOR_FAULTS="refund:hang"))
    assert "KASSA_SIMULATOR_FAULTS" in message


def test_simulator_faults_are_refused_with_stripe() -> None:
    message = refused(
        {
            "KASSA_PROCESSOR": "stripe",
            "KASSA_STRIPE_API_KEY": "sk_test_x",
            "KASSA_SIMULATOR_FAULTS": "refund:hang",
        }
    )
    assert "KASSA_SIMULATOR_FAULTS" in message


def test_a_malformed_simulator_fault_is_refused_by_name() -> None:
    assert "refund:explode" in refused({"KASSA_SIMULATOR_FAULTS": "refund:explode"})


def test_simulator_faults_plan_the_simulator_in_tests() -> None:
    from kassa.container import build_processor
    from kassa.db import Database, create_engine
    from kassa.processors.faults import FaultInjectingProcessor

    settings = load_settings({"KASSA_SIMULATOR_FAULTS": "charge:hang, refund:lose_answer"})
    processor = build_processor(settings, Database(create_engine("sqlite+aiosqlite://")))
    assert isinstance(processor, FaultInjectingProcessor)
    assert (processor.pending("charge"), processor.pending("refund")) == (1, 1)
    assert processor.pending("prepare_charge") == 0


# issue 14's settings, refused when out of range ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KASSA_IDEMPOTENCY_LEASE_SECONDS", "0"),
        ("KASSA_IDEMPOTENCY_LEASE_SECONDS", "3601"),
        ("KASSA_IDEMPOTENCY_LEASE_SECONDS", "soon"),
        ("KASSA_SHUTDOWN_GRACE_SECONDS", "0"),
        ("KASSA_SHUTDOWN_GRACE_SECONDS", "601"),
        ("KASSA_PROCESSOR_TIMEOUT_SECONDS", "0"),
        ("KASSA_PROCESSOR_TIMEOUT_SECONDS", "26"),
    ],
)
def test_out_of_range_reliability_settings_are_refused_in_one_line(name: str, value: str) -> None:
    assert name in refused({name: value})


def test_simulator_faults_are_refused_with_stripe_outside_production() -> None:
    message = refused(
        {
            "KASSA_PROCESSOR": "stripe",
            "KASSA_STRIPE_API_KEY": "sk_test_settings",
            "KASSA_SIMULATOR_FAULTS": "charge:hang",
        }
    )
    assert "KASSA_SIMULATOR_FAULTS" in message
