"""Settings: one `Settings` built once from `KASSA_*` variables and `.env`.

Development defaults keep everything beside the database (generated secrets in files
next to the SQLite file); `KASSA_ENV=production` refuses those defaults.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from limits import parse_many
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from kassa.edge.proxy import Network, parse_trusted_proxies
from kassa.processors.faults import parse_faults
from kassa.vault.crypto import VaultKey, generate_vault_key_entry, parse_vault_keys

ENV_PREFIX = "KASSA_"
DEFAULT_DATABASE_FILE = "kassa.db"
JWT_SECRET_FILE = "kassa.jwt.key"  # noqa: S105  (a file name)
VAULT_KEYS_FILE = "kassa.vault.keys"
MIN_JWT_SECRET_BYTES = 32
# Production refuses a JWT secret whose characters carry less than this many bits by a
# Shannon estimate (length × entropy of its character frequencies), or that repeats a
# shorter pattern: `openssl rand -hex 16` carries ~118 bits, 32 × `a` none.
MIN_JWT_SECRET_BITS = 96
# Production trusts X-Forwarded-For from at most a private network's worth of addresses:
# for IPv4 the three RFC 1918 networks together (10/8, 172.16/12, 192.168/16), for IPv6
# sixteen /32s (a CDN's published ranges fit; `::/1` or `0.0.0.0/1,128.0.0.0/1` do not).
MAX_TRUSTED_IPV4_ADDRESSES = 2**24 + 2**20 + 2**16
MAX_TRUSTED_IPV6_ADDRESSES = 16 * 2**96
# Argon2id may not be made weaker in production than the weakest configuration OWASP lists
# (m=7168 KiB with t=5): memory in KiB × iterations at least this.
MIN_PRODUCTION_ARGON2_WORK = 7168 * 5
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


class SettingsError(Exception):
    """A setting is missing, unknown or invalid; the message is one human-readable line."""


class Settings(BaseSettings):
    """Every setting the contract lists, with its development default."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # `load_settings` is the one reader of the environment and `.env`, so that what it
        # checks (unknown names) is exactly what is used, and an explicit environment is not
        # mixed with the process's own.
        return (init_settings,)

    database_url: str = ""
    # Connections each process keeps open to PostgreSQL (its pool never opens more). A
    # request holds one for its statements (milliseconds; never across a processor call or
    # a password hash), so a few serve a worker's whole load: see the README's arithmetic.
    database_pool_size: Annotated[int, Field(ge=1, le=1000)] = 10
    redis_url: str | None = None
    env: Literal["development", "production", "test"] = "development"
    jwt_secret: SecretStr | None = None
    vault_keys: SecretStr | None = None
    rate_limit: str = "100/15minutes"
    user_rate_limit: str = "1000/15minutes"
    # Requests made with an API key count against the key alone (not the client IP, not the
    # user's login-token limit): in the spirit of Stripe's, more for live keys than test ones.
    key_rate_limit_live: str = "100/second"
    key_rate_limit_test: str = "25/second"
    redis_key_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")] = "kassa"
    cors_origins: str = ""
    max_amount: Annotated[int, Field(gt=0, le=2**62)] = 99_999_999
    trusted_proxies: str = ""
    processor: Literal["simulator", "stripe"] = "simulator"
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    log_file: Path | None = None
    log_file_max_bytes: Annotated[int, Field(gt=0)] = 10 * 1024 * 1024
    log_file_backups: Annotated[int, Field(ge=1)] = 5
    simulator_delay_ms: Annotated[int, Field(ge=0, le=60_000)] = 0
    # Where customers reach kassa's own pages (the simulator's 3-D Secure challenge); unset,
    # `kassa serve` sets it from its --host and --port.
    public_url: str = ""
    # An authorization not captured within this many hours is voided by `kassa worker`.
    authorization_expiry_hours: Annotated[int, Field(ge=1, le=31 * 24)] = 7 * 24
    # Test and drill hook: faults the simulator suffers, used up in order, one per call
    # ("refund:hang,charge:lose_answer"); refused with KASSA_ENV=production or Stripe.
    simulator_faults: str = ""
    # How long a claimed Idempotency-Key counts as in flight before a retry may take it over.
    idempotency_lease_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    # One call to the processor; a `process` may make two (Stripe prepares, then confirms).
    # At most 25 s, so that a request stays inside its idempotency key's 60-second lease.
    processor_timeout_seconds: Annotated[float, Field(gt=0, le=25)] = 15.0
    # How long SIGTERM waits for in-flight requests; unset: 2 × the processor timeout + 5 s.
    shutdown_grace_seconds: Annotated[float | None, Field(gt=0, le=600)] = None
    webhook_allow_private: bool = False
    # Webhook attempts one `kassa worker` makes at once, and at most per endpoint (over every
    # worker): a slow endpoint holds only its share.
    webhook_concurrency: Annotated[int, Field(ge=2, le=1000)] = 32
    webhook_endpoint_concurrency: Annotated[int, Field(ge=1, le=100)] = 4
    access_token_ttl_seconds: Annotated[int, Field(ge=60, le=86_400)] = 900
    refresh_token_ttl_seconds: Annotated[int, Field(ge=300, le=90 * 86_400)] = 30 * 86_400
    max_body_bytes: Annotated[int, Field(ge=1024, le=10 * 1024 * 1024)] = 64 * 1024
    # Every Redis call (rate limits, readiness) is bounded by this; a slower Redis counts as
    # down and the limits count in-process for a moment.
    redis_timeout_ms: Annotated[int, Field(ge=10, le=5000)] = 100
    # Argon2id cost: OWASP's recommendation by default (19 MiB, 2 iterations, 1 lane).
    argon2_memory_kib: Annotated[int, Field(ge=8, le=4 * 1024 * 1024)] = 19_456
    argon2_time_cost: Annotated[int, Field(ge=1, le=100)] = 2
    argon2_parallelism: Annotated[int, Field(ge=1, le=64)] = 1
    # How long a checkout session's page takes payments (Stripe's range: 30 min to 24 h). At
    # most a day, the time an Idempotency-Key is kept: a checkout attempt is keyed by one.
    checkout_session_ttl_seconds: Annotated[int, Field(ge=1800, le=86_400)] = 86_400

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_file", mode="before")
    @classmethod
    def _empty_log_file_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("rate_limit", "user_rate_limit", "key_rate_limit_live", "key_rate_limit_test")
    @classmethod
    def _valid_rate_limit(cls, value: str) -> str:
        try:
            items = parse_many(value)
        except ValueError:
            raise ValueError("expected a rate such as 100/15minutes") from None
        if any(item.amount < 1 for item in items):
            raise ValueError("a rate of zero refuses every request; expected at least 1/...")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_trusted_proxies(cls, value: str) -> str:
        parse_trusted_proxies(value)  # ValueError names the bad entry
        return value

    @field_validator("cors_origins")
    @classmethod
    def _valid_cors_origins(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",")):
            if origin and origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin such as https://shop.example.com")
        return value

    @field_validator("public_url")
    @classmethod
    def _valid_public_url(cls, value: str) -> str:
        if value and not _ORIGIN.fullmatch(value.rstrip("/")):
            raise ValueError(f"{value!r} is not a URL such as https://pay.shop.example.com")
        return value.rstrip("/")

    @field_validator("simulator_faults")
    @classmethod
    def _valid_simulator_faults(cls, value: str) -> str:
        parse_faults(value)  # ValueError names the bad entry
        return value

    @field_validator("database_url")
    @classmethod
    def _valid_database_url(cls, value: str) -> str:
        if not value:
            return value
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("not a database URL") from None
        if url.drivername not in {"sqlite+aiosqlite", "postgresql+asyncpg"}:
            raise ValueError("use sqlite+aiosqlite:///FILE or postgresql+asyncpg://...")
        return value

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "redis+unix://")):
            raise ValueError("use redis://HOST:PORT/DB or rediss://...")
        if importlib.util.find_spec("redis") is None:
            raise ValueError("Redis rate limits need the redis package, which is not installed")
        return value

    @field_validator("stripe_api_base")
    @classmethod
    def _valid_stripe_api_base(cls, value: str | None) -> str | None:
        if not value:
            return None
        if _ORIGIN.fullmatch(value.rstrip("/")) is None:
            raise ValueError(
                "expected an http(s)://host[:port] base such as https://api.stripe.com"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _argon2_rules(self) -> Settings:
        if self.argon2_memory_kib < 8 * self.argon2_parallelism:
            raise ValueError(
                "KASSA_ARGON2_MEMORY_KIB must be at least 8 × KASSA_ARGON2_PARALLELISM "
                "(Argon2's own minimum)"
            )
        return self

    @model_validator(mode="after")
    def _stripe_rules(self) -> Settings:
        if self.processor == "stripe" and self.stripe_api_key is None:
            raise ValueError("KASSA_PROCESSOR=stripe needs KASSA_STRIPE_API_KEY")
        if (
            self.env == "production"
            and self.stripe_api_base
            and not self.stripe_api_base.startswith("https://")
        ):
            raise ValueError(
                "production sends card data to Stripe only over https: "
                "KASSA_STRIPE_API_BASE must start with https://"
            )
        return self

    @model_validator(mode="after")
    def _faults_only_in_tests(self) -> Settings:
        if self.simulator_faults and (self.env == "production" or self.processor != "simulator"):
            raise ValueError("KASSA_SIMULATOR_FAULTS is a test hook of the simulator only")
        return self

    @model_validator(mode="after")
    def _grace_outlasts_the_processor(self) -> Settings:
        if self.shutdown_grace_seconds is not None and (
            self.shutdown_grace_seconds <= self.processor_timeout_seconds
        ):
            raise ValueError(
                f"KASSA_SHUTDOWN_GRACE_SECONDS ({self.shutdown_grace_seconds:g}) must be longer "
                f"than KASSA_PROCESSOR_TIMEOUT_SECONDS ({self.processor_timeout_seconds:g}), "
                "or a shutdown cuts processor calls short and leaves payments processing"
            )
        return self

    @model_validator(mode="after")
    def _webhook_pool_outsizes_one_endpoint(self) -> Settings:
        if self.webhook_endpoint_concurrency >= self.webhook_concurrency:
            raise ValueError(
                f"KASSA_WEBHOOK_ENDPOINT_CONCURRENCY ({self.webhook_endpoint_concurrency}) must "
                f"be less than KASSA_WEBHOOK_CONCURRENCY ({self.webhook_concurrency}), or one "
                "slow endpoint could hold every delivery slot"
            )
        return self

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.env != "production":
            return self
        if self.jwt_secret is None:
            raise ValueError("production needs KASSA_JWT_SECRET (a generated secret is refused)")
        if self.vault_keys is None:
            raise ValueError("production needs KASSA_VAULT_KEYS (generated keys are refused)")
        if not self.database_url or self.database_url.startswith("sqlite"):
            raise ValueError("production needs PostgreSQL in KASSA_DATABASE_URL, not SQLite")
        if self.simulator_delay_ms:
            raise ValueError(
                "production refuses KASSA_SIMULATOR_DELAY_MS (a test hook that slows the "
                "simulator down)"
            )
        if any(network.prefixlen == 0 for network in self.trusted_proxy_networks):
            raise ValueError(
                "production refuses KASSA_TRUSTED_PROXIES that trust every address "
                "(anyone could forge X-Forwarded-For); list your proxies"
            )
        _check_trusted_proxy_size(self.trusted_proxy_networks)
        jwt_secret = self.jwt_secret.get_secret_value().encode()
        # (A secret that is too short is refused, saying so, once the secrets are read.)
        if len(jwt_secret) >= MIN_JWT_SECRET_BYTES and not _strong_secret(jwt_secret):
            raise ValueError(
                "production refuses a KASSA_JWT_SECRET with almost no entropy "
                "(repeated characters or a repeated pattern); generate one, e.g. "
                "`openssl rand -base64 48`"
            )
        if "*" in self.cors_origin_list:
            raise ValueError(
                "production refuses `*` in KASSA_CORS_ORIGINS; list the origins that may call "
                "the API"
            )
        if self.argon2_memory_kib * self.argon2_time_cost < MIN_PRODUCTION_ARGON2_WORK:
            raise ValueError(
                "production refuses Argon2id weaker than OWASP's weakest configuration: "
                "KASSA_ARGON2_MEMORY_KIB × KASSA_ARGON2_TIME_COST must be at least "
                f"{MIN_PRODUCTION_ARGON2_WORK}"
            )
        return self

    @property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        return parse_trusted_proxies(self.trusted_proxies)

    @property
    def shutdown_grace(self) -> float:
        """Seconds SIGTERM waits for in-flight requests: longer than the longest time a
        request may spend at the processor (two calls), unless set."""
        if self.shutdown_grace_seconds is not None:
            return self.shutdown_grace_seconds
        return 2 * self.processor_timeout_seconds + 5

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{DEFAULT_DATABASE_FILE}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def state_dir(self) -> Path:
        """Where generated development secrets live: beside the SQLite file, else here."""
        url = make_url(self.resolved_database_url)
        if self.is_sqlite and url.database and url.database != ":memory:":
            return Path(url.database).resolve().parent
        return Path.cwd()

    @cached_property
    def secrets(self) -> Secrets:
        return _load_secrets(self)


def _check_trusted_proxy_size(networks: tuple[Network, ...]) -> None:
    """ValueError when the networks trust more addresses than a private network holds."""
    for version, most in ((4, MAX_TRUSTED_IPV4_ADDRESSES), (6, MAX_TRUSTED_IPV6_ADDRESSES)):
        total = sum(n.num_addresses for n in networks if n.version == version)
        if total > most:
            raise ValueError(
                f"production refuses KASSA_TRUSTED_PROXIES that trust {total} IPv{version} "
                f"addresses (at most {most}, a private network's worth): list your proxies"
            )


def _strong_secret(data: bytes) -> bool:
    """Not a repeated pattern, and at least MIN_JWT_SECRET_BITS by a Shannon estimate."""
    if not data:
        return False
    for period in range(1, len(data) // 2 + 1):
        if len(data) % period == 0 and data == data[:period] * (len(data) // period):
            return False
    counts = Counter(data)
    per_byte = -sum(c / len(data) * math.log2(c / len(data)) for c in counts.values())
    return per_byte * len(data) >= MIN_JWT_SECRET_BITS


@dataclass(frozen=True, slots=True)
class Secrets:
    jwt_secret: bytes
    vault_keys: tuple[VaultKey, ...]


def _read_or_create(path: Path, make: str) -> str:
    """Return the file's content, creating it (mode 0600) with `make` on first use."""
    try:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text(encoding="utf-8").strip()
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(make + "\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SettingsError(f"cannot use the generated secret file {path}: {reason}") from None
    return make


def _load_secrets(settings: Settings) -> Secrets:
    if settings.jwt_secret is not None:
        jwt_secret = settings.jwt_secret.get_secret_value()
    else:
        jwt_secret = _read_or_create(
            settings.state_dir / JWT_SECRET_FILE, secrets.token_urlsafe(48)
        )
    if len(jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise SettingsError(f"KASSA_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes long")
    if settings.vault_keys is not None:
        raw_keys = settings.vault_keys.get_secret_value()
        source = "KASSA_VAULT_KEYS"
    else:
        raw_keys = _read_or_create(settings.state_dir / VAULT_KEYS_FILE, generate_vault_key_entry())
        source = str(settings.state_dir / VAULT_KEYS_FILE)
    try:
        keys = parse_vault_keys(raw_keys)
    except ValueError as exc:
        raise SettingsError(f"{source}: {exc}") from None
    return Secrets(jwt_secret=jwt_secret.encode(), vault_keys=keys)


def _unknown_variables(environ: dict[str, str]) -> list[str]:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(k for k in environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from `environ` (the process environment by default) over the
    `.env` file in the working directory, turning every problem into a one-line
    `SettingsError`."""
    env = dict(os.environ if environ is None else environ)
    dotenv = Path(".env")
    try:
        file_values = dotenv_values(dotenv, encoding="utf-8") if dotenv.is_file() else {}
    except (OSError, UnicodeDecodeError):
        raise SettingsError("cannot read the .env file in the working directory") from None
    merged = {k: v for k, v in file_values.items() if v is not None}
    merged.update(env)  # the environment wins over .env
    unknown = _unknown_variables(merged)
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]} (settings are listed in the README)")
    try:
        settings = Settings(**_kwargs_from(merged))
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if not field:
            raise SettingsError(f"invalid settings: {message}") from None
        raise SettingsError(f"invalid setting {ENV_PREFIX}{field.upper()}: {message}") from None
    _ = settings.secrets  # fail at start-up, not on the first request
    return settings


def _kwargs_from(environ: Mapping[str, str]) -> dict[str, Any]:
    return {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in environ.items()
        if key.upper().startswith(ENV_PREFIX)
    }
