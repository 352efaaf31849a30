"""The lean reference: kassa's benchmark lifecycle, hand-written for the fewest round trips.

A FastAPI + asyncpg app, independent of kassa (no kassa import, its own schema and SQL in
bench/reference/), that gives the lifecycle's guarantees:

- JWT (HS256) naming a login row that every request's statement checks (revocable at once);
- one Redis call per request: a Lua fixed-window limit per client address and per shopper;
- Idempotency-Key claimed in the request's first statement; the answer stored with the
  effect and replayed for a repeat (another body under the same key is refused);
- the card sealed with AES-GCM (the charge id as associated data) and destroyed at settle;
- process: claim + pending → processing (1), the card network's record (1), settle with two
  ledger lines, the statement's row, the outbox event and the stored answer (1);
- refund: claim + hold the amount under the charge's lock (1), the network's record (1),
  settle likewise (1); create and status: 1 each;
- one JSON access line per request.

    REF_DSN=postgresql://… REF_REDIS_URL=redis://… REF_JWT_SECRET=… REF_CARD_KEY=<base64 32 bytes>
    uvicorn --factory bench.reference.app:create_app --workers 2
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TextIO, TypeVar

import asyncpg
import jwt
import orjson
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.requests import ClientDisconnect

from bench.reference import sql
from bench.reference.resp import Redis

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# A fixed window per key: INCR, set the expiry on the window's first hit; the first key over
# its limit is answered (its index), 0 when every key is within its limit.
RATE_SCRIPT = """
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, ARGV[#KEYS + 1]) end
  if n > tonumber(ARGV[i]) then return i end
end
return 0
"""
RATE_SHA = hashlib.sha1(RATE_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts so

DECLINES = {
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
    "4000000000000127": "incorrect_cvc",
    "4000000000000119": "processing_error",
}


@dataclass(frozen=True)
class Config:
    dsn: str
    redis_url: str
    redis_prefix: str
    jwt_secret: str
    card_key: bytes
    pool_size: int = 10
    rate_limit: int = 10_000_000  # per window, per address and per shopper
    rate_window: int = 60
    token_minutes: int = 60

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        return cls(
            dsn=env["REF_DSN"],
            redis_url=env.get("REF_REDIS_URL", "redis://127.0.0.1:6379/0"),
            redis_prefix=env.get("REF_REDIS_PREFIX", "lean-ref"),
            jwt_secret=env["REF_JWT_SECRET"],
            card_key=base64.urlsafe_b64decode(env["REF_CARD_KEY"] + "=="),
            pool_size=int(env.get("REF_POOL_SIZE", "10")),
            rate_limit=int(env.get("REF_RATE_LIMIT", "10000000")),
        )


# --- bodies ---------------------------------------------------------------------------------


class Card(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: Annotated[str, StringConstraints(pattern=r"^\d{12,19}$")]
    exp_month: int = Field(ge=1, le=12)
    exp_year: int = Field(ge=2000, le=2100)
    cvc: Annotated[str, StringConstraints(pattern=r"^\d{3,4}$")]
    holder_name: str | None = Field(default=None, max_length=200)


class NewPayment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: int = Field(gt=0, le=99_999_999)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    payment_method: Literal["credit_card"]
    details: Card


class ProcessBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_id: uuid.UUID


class RefundBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: int | None = Field(default=None, gt=0)
    reason: str | None = Field(default=None, max_length=500)


class Credentials(BaseModel):
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]
    password: Annotated[str, StringConstraints(min_length=12, max_length=1024)]


class Registration(Credentials):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


def luhn_ok(number: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def card_brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"34", "37"}:
        return "amex"
    if "51" <= number[:2] <= "55" or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number.startswith(("6011", "65")):
        return "discover"
    return "unknown"


# --- answers --------------------------------------------------------------------------------


class Refusal(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "type": "about:blank",
                "title": self.code,
                "status": self.status,
                "code": self.code,
                "detail": self.detail,
            }
        )


def answer(status: int, body: bytes, replayed: bool = False) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    media = "application/json" if status < 400 else "application/problem+json"
    return Response(body, status_code=status, media_type=media, headers=headers)


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def payment_body(
    charge: uuid.UUID,
    shopper: uuid.UUID,
    state: str,
    amount: int,
    currency: str,
    card: tuple[str, str, int, int],
    opened: datetime,
    changed: datetime,
    failure: str | None = None,
) -> bytes:
    brand, last4, month, year = card
    return orjson.dumps(
        {
            "id": str(charge),
            "user_id": str(shopper),
            "status": state,
            "amount": amount,
            "amount_refunded": 0,
            "currency": currency,
            "payment_method": "credit_card",
            "details": {
                "brand": brand,
                "last4": last4,
                "exp_month": month,
                "exp_year": year,
                "holder_name": None,
            },
            "description": None,
            "metadata": {},
            "failure_code": failure,
            "failure_message": failure and failure.replace("_", " "),
            "created_at": stamp(opened),
            "updated_at": stamp(changed),
        }
    )


# --- the app --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    shopper: uuid.UUID
    login: uuid.UUID


class Lean:
    """Everything a request needs: the pool, Redis, the keys."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pool: asyncpg.Pool | None = None
        self.redis = Redis(config.redis_url)
        self.sealer = AESGCM(config.card_key)
        self.hasher = PasswordHasher()

    async def open(self) -> None:
        # Nothing here changes a connection's session state (no SET, LISTEN, advisory lock,
        # open transaction), so a released connection needs no reset round trip.
        self.pool = await asyncpg.create_pool(
            self.config.dsn,
            min_size=self.config.pool_size,
            max_size=self.config.pool_size,
            reset=_no_reset,
        )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        await self.redis.close()

    async def row(self, statement: sql.Statement, **values: Any) -> asyncpg.Record | None:
        assert self.pool is not None
        async with self.pool.acquire() as connection:
            return await connection.fetchrow(statement.text, *statement.bind(**values))

    async def limit(self, address: str, shopper: uuid.UUID | None) -> None:
        """The request's one Redis call: every limit that applies, in one script."""
        window = int(time.time()) // self.config.rate_window
        prefix = self.config.redis_prefix
        keys = [f"{prefix}:ip:{address}:{window}"]
        if shopper is not None:
            keys.append(f"{prefix}:user:{shopper}:{window}")
        limits = [self.config.rate_limit] * len(keys)
        args: tuple[str | int, ...] = (len(keys), *keys, *limits, self.config.rate_window)
        try:
            over = await self.redis.call("EVALSHA", RATE_SHA, *args)
        except Exception as error:
            if "NOSCRIPT" not in str(error):
                raise
            over = await self.redis.call("EVAL", RATE_SCRIPT, *args)
        if over:
            raise Refusal(429, "rate_limited", "too many requests")

    def principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return None
        try:
            claims = jwt.decode(header[7:], self.config.jwt_secret, algorithms=["HS256"])
            return Principal(uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"]))
        except (jwt.InvalidTokenError, KeyError, ValueError):
            return None

    async def authenticate(self, request: Request) -> Principal:
        """The one Redis call, then the token; the login row is checked by the request's
        own statement."""
        who = self.principal(request)
        address = request.client.host if request.client else "-"
        await self.limit(address, who.shopper if who else None)
        if who is None:
            raise Refusal(401, "unauthorized", "a valid bearer token is required")
        return who

    def seal(self, charge: uuid.UUID, card: Card) -> bytes:
        nonce = os.urandom(12)
        plain = orjson.dumps({"number": card.number, "cvc": card.cvc})
        return nonce + self.sealer.encrypt(nonce, plain, charge.bytes)

    def unseal(self, charge: uuid.UUID, sealed: bytes) -> dict[str, str]:
        opened: dict[str, str] = orjson.loads(
            self.sealer.decrypt(sealed[:12], sealed[12:], charge.bytes)
        )
        return opened


async def _no_reset(_connection: asyncpg.Connection) -> None:
    return None


def request_hash(request: Request, body: bytes) -> bytes:
    return hashlib.sha256(
        request.method.encode() + request.url.path.encode() + b"\0" + body
    ).digest()


def idempotency_key(request: Request) -> str:
    key = request.headers.get("idempotency-key")
    if key is None:
        return f"auto-{uuid.uuid4()}"  # no key: a claim nobody can repeat
    if not 1 <= len(key) <= 255:
        raise Refusal(400, "invalid_idempotency_key", "Idempotency-Key must be 1–255 characters")
    return key


def replayed(row: asyncpg.Record, fingerprint: bytes) -> Response:
    """The answer for a key claimed before this request began."""
    if row["request_hash"] != fingerprint:
        raise Refusal(422, "idempotency_key_reused", "this key was used with another request")
    if row["reply_status"] is None:
        raise Refusal(409, "request_in_progress", "a request with this key is still running")
    return answer(row["reply_status"], row["reply_body"].encode(), replayed=True)


Body = TypeVar("Body", bound=BaseModel)


def parse(model: type[Body], body: bytes) -> Body:
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(x) for x in first["loc"])
        raise Refusal(422, "validation_error", f"{field}: {first['msg']}") from None


def create_app(
    config: Config | None = None, log: TextIO | None = None, lean: Lean | None = None
) -> AccessLog:
    """`lean`, if given, is used instead of `Lean(config)` (bench/ladder.py swaps its layers)."""
    if lean is None:
        lean = Lean(config or Config.from_env())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await lean.open()
        yield
        await lean.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.lean = lean

    @app.exception_handler(Refusal)
    async def refused(_request: Request, error: Refusal) -> Response:
        return answer(error.status, error.body())

    @app.exception_handler(ClientDisconnect)
    async def gone(_request: Request, _error: ClientDisconnect) -> Response:
        # The client left before its body arrived (wrk stopping mid-request): nothing
        # happened and nobody is listening; 499, as nginx logs it, not a 500 and a traceback.
        return answer(499, b"")

    @app.get("/healthz")
    async def healthz() -> Response:
        return answer(200, b'{"status":"ok"}')

    @app.post("/api/auth/register")
    async def register(request: Request) -> Response:
        address = request.client.host if request.client else "-"
        await lean.limit(address, None)
        body = parse(Registration, await request.body())
        secret_hash = await asyncio.to_thread(lean.hasher.hash, body.password)
        now = datetime.now(UTC)
        shopper = uuid.uuid4()
        email = body.email.lower()
        made = await lean.row(
            sql.REGISTER,
            shopper=shopper,
            email=email,
            name=body.name,
            secret_hash=secret_hash,
            now=now,
        )
        if made is None:
            raise Refusal(409, "email_taken", "an account with this email exists")
        out = {"id": str(shopper), "name": body.name, "email": email, "created_at": stamp(now)}
        return answer(201, orjson.dumps(out))

    @app.post("/api/auth/login")
    async def login(request: Request) -> Response:
        address = request.client.host if request.client else "-"
        await lean.limit(address, None)
        body = parse(Credentials, await request.body())
        found = await lean.row(sql.FIND_SHOPPER, email=body.email.lower())
        try:
            if found is None:
                raise VerificationError("unknown email")
            await asyncio.to_thread(lean.hasher.verify, found["secret_hash"], body.password)
        except VerificationError:
            raise Refusal(401, "invalid_credentials", "wrong email or password") from None
        session = uuid.uuid4()
        expires = datetime.now(UTC) + timedelta(minutes=lean.config.token_minutes)
        await lean.row(sql.OPEN_LOGIN, login=session, shopper=found["id"], expires=expires)
        token = jwt.encode(
            {"sub": str(found["id"]), "sid": str(session), "exp": expires},
            lean.config.jwt_secret,
            algorithm="HS256",
        )
        out = {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": lean.config.token_minutes * 60,
        }
        return answer(200, orjson.dumps(out))

    @app.post("/api/auth/logout")
    async def logout(request: Request) -> Response:
        who = await lean.authenticate(request)
        await lean.row(sql.REVOKE_LOGIN, login=who.login, shopper=who.shopper)
        return Response(status_code=204)

    @app.post("/api/payments")
    async def create(request: Request) -> Response:
        who = await lean.authenticate(request)
        raw = await request.body()
        key = idempotency_key(request)
        fingerprint = request_hash(request, raw)
        body = parse(NewPayment, raw)
        if not luhn_ok(body.details.number):
            raise Refusal(422, "validation_error", "details.number: not a valid card number")
        charge = uuid.uuid4()
        now = datetime.now(UTC)
        card = (
            card_brand(body.details.number),
            body.details.number[-4:],
            body.details.exp_month,
            body.details.exp_year,
        )
        reply = payment_body(
            charge, who.shopper, "pending", body.amount, body.currency, card, now, now
        )
        row = await lean.row(
            sql.CREATE,
            login=who.login,
            shopper=who.shopper,
            key=key,
            request_hash=fingerprint,
            reply=reply.decode(),
            now=now,
            charge=charge,
            amount=body.amount,
            currency=body.currency,
            brand=card[0],
            last4=card[1],
            exp_month=card[2],
            exp_year=card[3],
            sealed=lean.seal(charge, body.details),
        )
        assert row is not None
        if not row["live"]:
            raise Refusal(401, "unauthorized", "the session has ended")
        if row["done"]:
            return answer(201, reply)
        if row["reply_status"] is None and row["request_hash"] is None:
            raise Refusal(409, "request_in_progress", "a request with this key is still running")
        return replayed(row, fingerprint)

    async def refuse_claimed(who: Principal, key: str, refusal: Refusal) -> Refusal:
        """A claimed key whose request was refused keeps the refusal as its answer."""
        await lean.row(
            sql.REPLY,
            shopper=who.shopper,
            key=key,
            status=refusal.status,
            reply=refusal.body().decode(),
        )
        return refusal

    @app.post("/api/payments/process")
    async def process(request: Request) -> Response:
        who = await lean.authenticate(request)
        raw = await request.body()
        key = idempotency_key(request)
        fingerprint = request_hash(request, raw)
        charge = parse(ProcessBody, raw).payment_id
        now = datetime.now(UTC)
        row = await lean.row(
            sql.PROCESS_BEGIN,
            login=who.login,
            shopper=who.shopper,
            key=key,
            request_hash=fingerprint,
            now=now,
            charge=charge,
        )
        assert row is not None
        if not row["live"]:
            raise Refusal(401, "unauthorized", "the session has ended")
        if not row["claimed"]:
            if row["request_hash"] is None:
                raise Refusal(409, "request_in_progress", "a request with this key is running")
            return replayed(row, fingerprint)
        if row["amount"] is None:
            if row["seen_state"] is None:
                raise await refuse_claimed(who, key, Refusal(404, "not_found", "no such payment"))
            raise await refuse_claimed(
                who, key, Refusal(409, "invalid_state", f"the payment is {row['seen_state']}")
            )
        amount, currency = row["amount"], row["currency"].strip()
        card_number = lean.unseal(charge, row["card_sealed"])["number"]
        failure = DECLINES.get(card_number)
        network = await lean.row(
            sql.NETWORK,
            reference=str(charge),
            kind="charge",
            amount=amount,
            currency=currency,
            outcome="failed" if failure else "succeeded",
            network_ref=f"sim_{uuid.uuid4().hex}",
            now=now,
        )
        assert network is not None
        state = "completed" if network["outcome"] == "succeeded" else "failed"
        settled_at = datetime.now(UTC)
        card = (row["card_brand"], row["card_last4"], row["card_exp_month"], row["card_exp_year"])
        reply = payment_body(
            charge,
            who.shopper,
            state,
            amount,
            currency,
            card,
            row["opened_at"],
            settled_at,
            failure if state == "failed" else None,
        )
        done = await lean.row(
            sql.PROCESS_SETTLE,
            charge=charge,
            state=state,
            network_ref=network["network_ref"],
            now=settled_at,
            posting=uuid.uuid4(),
            move=uuid.uuid4(),
            reply=reply.decode(),
            shopper=who.shopper,
            key=key,
        )
        if done is None or not done["settled"]:
            raise Refusal(409, "invalid_state", "the payment was settled by another request")
        return answer(200, reply)

    @app.get("/api/payments/{charge}/status")
    async def status(request: Request, charge: str) -> Response:
        who = await lean.authenticate(request)
        try:
            charge_id = uuid.UUID(charge)
        except ValueError:
            raise Refusal(404, "not_found", "no such payment") from None
        row = await lean.row(sql.STATUS, login=who.login, shopper=who.shopper, charge=charge_id)
        assert row is not None
        if not row["live"]:
            raise Refusal(401, "unauthorized", "the session has ended")
        if row["state"] is None:
            raise Refusal(404, "not_found", "no such payment")
        out = {
            "id": charge,
            "status": row["state"],
            "amount": row["amount"],
            "amount_refunded": row["refunded"],
            "currency": row["currency"].strip(),
            "updated_at": stamp(row["changed_at"]),
        }
        return answer(200, orjson.dumps(out))

    @app.post("/api/payments/{charge}/refund")
    async def refund(request: Request, charge: str) -> Response:
        who = await lean.authenticate(request)
        raw = await request.body()
        key = idempotency_key(request)
        fingerprint = request_hash(request, raw)
        try:
            charge_id = uuid.UUID(charge)
        except ValueError:
            raise Refusal(404, "not_found", "no such payment") from None
        body = parse(RefundBody, raw or b"{}")
        refund_id = uuid.uuid4()
        now = datetime.now(UTC)
        row = await lean.row(
            sql.REFUND_BEGIN,
            login=who.login,
            shopper=who.shopper,
            key=key,
            request_hash=fingerprint,
            now=now,
            charge=charge_id,
            amount=body.amount,
            refund=refund_id,
            reason=body.reason,
        )
        assert row is not None
        if not row["live"]:
            raise Refusal(401, "unauthorized", "the session has ended")
        if not row["claimed"]:
            if row["request_hash"] is None:
                raise Refusal(409, "request_in_progress", "a request with this key is running")
            return replayed(row, fingerprint)
        if row["taken"] is None:
            seen = row["seen_state"]
            if seen is None:
                refusal = Refusal(404, "not_found", "no such payment")
            elif seen in {"completed", "partially_refunded"}:
                refusal = Refusal(
                    422, "amount_exceeds_refundable", "the amount exceeds what is left to refund"
                )
            else:
                refusal = Refusal(409, "invalid_state", f"the payment is {seen}")
            raise await refuse_claimed(who, key, refusal)
        taken, currency = row["taken"], row["currency"].strip()
        network = await lean.row(
            sql.NETWORK,
            reference=str(refund_id),
            kind="refund",
            amount=taken,
            currency=currency,
            outcome="succeeded",
            network_ref=f"sim_re_{uuid.uuid4().hex}",
            now=now,
        )
        assert network is not None
        reply = orjson.dumps(
            {
                "id": str(refund_id),
                "payment_id": charge,
                "amount": taken,
                "currency": currency,
                "status": "succeeded",
                "reason": body.reason,
                "created_at": stamp(now),
            }
        )
        done = await lean.row(
            sql.REFUND_SETTLE,
            refund=refund_id,
            network_ref=network["network_ref"],
            now=datetime.now(UTC),
            posting=uuid.uuid4(),
            reply=reply.decode(),
            shopper=who.shopper,
            key=key,
        )
        if done is None:
            raise Refusal(409, "invalid_state", "the refund was settled by another request")
        return answer(201, reply)

    return AccessLog(app, log or sys.stdout)


class AccessLog:
    """One JSON line per request: when, who asked, what, the answer's status and time."""

    def __init__(self, app: FastAPI, out: TextIO) -> None:
        self.app = app
        self.out = out
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.record(scope, status, time.perf_counter() - started)

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        """The request's line (bench/ladder.py writes it through other libraries)."""
        client = scope.get("client") or ("-", 0)
        line = orjson.dumps(
            {
                "ts": time.time(),
                "event": "request",
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "client": client[0],
                "ms": round(1000 * seconds, 2),
            }
        )
        self.out.write(line.decode() + "\n")
        self.out.flush()
