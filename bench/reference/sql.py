"""Every statement the lean reference sends, one round trip each.

Each request's work is one statement where the guarantees allow it: the session check, the
Idempotency-Key claim and the change itself are CTEs of one data-modifying statement, which
PostgreSQL runs atomically in autocommit mode (no BEGIN/COMMIT round trips). A statement
names its parameters so the app binds by name and `pgbench_script` can render the same text
for pgbench.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_PARAM = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class Statement:
    name: str
    text: str
    params: tuple[str, ...]

    def bind(self, **values: Any) -> list[Any]:
        """The positional arguments in the statement's order; a missing name is an error."""
        return [values[name] for name in self.params]


# The login row the token names must exist, belong to the token's shopper, be unrevoked
# and unexpired. $1 is the login id and $2 the shopper id in every statement that uses it.
_LIVE = """
live AS (
    SELECT shopper_id FROM login
    WHERE id = $1::uuid AND shopper_id = $2::uuid
      AND revoked_at IS NULL AND expires_at > now()
)"""

# The key's earlier claim as it stood when the statement began (NULL if none).
_PRIOR = "LEFT JOIN replay AS prior ON prior.shopper_id = $2 AND prior.idem_key = $3"

CREATE = Statement(
    "create",
    f"""
WITH {_LIVE},
claim AS (
    INSERT INTO replay (shopper_id, idem_key, request_hash, reply_status, reply_body, claimed_at)
    SELECT shopper_id, $3::text, $4::bytea, 201, $5::text, $6::timestamptz FROM live
    ON CONFLICT (shopper_id, idem_key) DO NOTHING
    RETURNING shopper_id
),
opened AS (
    INSERT INTO charge (id, shopper_id, state, amount, currency, card_brand, card_last4,
                        card_exp_month, card_exp_year, card_sealed, opened_at, changed_at)
    SELECT $7::uuid, shopper_id, 'pending', $8::bigint, $9::text, $10::text, $11::text,
           $12::smallint, $13::smallint, $14::bytea, $6, $6
    FROM claim
    RETURNING id
)
SELECT EXISTS (SELECT FROM live) AS live, EXISTS (SELECT FROM opened) AS done,
       prior.request_hash, prior.reply_status, prior.reply_body
FROM (VALUES (1)) AS one (x)
{_PRIOR}""",  # noqa: S608 - composed of this module's constants only
    (
        "login",
        "shopper",
        "key",
        "request_hash",
        "reply",
        "now",
        "charge",
        "amount",
        "currency",
        "brand",
        "last4",
        "exp_month",
        "exp_year",
        "sealed",
    ),
)

# Claim the key and move the charge pending → processing, or neither.
PROCESS_BEGIN = Statement(
    "process_begin",
    f"""
WITH {_LIVE},
claim AS (
    INSERT INTO replay (shopper_id, idem_key, request_hash, claimed_at)
    SELECT shopper_id, $3::text, $4::bytea, $5::timestamptz FROM live
    ON CONFLICT (shopper_id, idem_key) DO NOTHING
    RETURNING shopper_id
),
moved AS (
    UPDATE charge AS c SET state = 'processing', changed_at = $5
    FROM claim
    WHERE c.id = $6::uuid AND c.shopper_id = claim.shopper_id AND c.state = 'pending'
    RETURNING c.amount, c.currency, c.card_brand, c.card_last4, c.card_exp_month,
              c.card_exp_year, c.card_sealed, c.opened_at
)
SELECT EXISTS (SELECT FROM live) AS live, EXISTS (SELECT FROM claim) AS claimed,
       moved.amount, moved.currency, moved.card_brand, moved.card_last4,
       moved.card_exp_month, moved.card_exp_year, moved.card_sealed, moved.opened_at,
       prior.request_hash, prior.reply_status, prior.reply_body, seen.state AS seen_state
FROM (VALUES (1)) AS one (x)
LEFT JOIN moved ON true
{_PRIOR}
LEFT JOIN charge AS seen ON seen.id = $6 AND seen.shopper_id = $2""",  # noqa: S608 - composed of this module's constants only
    ("login", "shopper", "key", "request_hash", "now", "charge"),
)

# The card network (simulated): its first answer per reference is the only one.
NETWORK = Statement(
    "network",
    """
INSERT INTO network_record (reference, kind, amount, currency, outcome, network_ref, recorded_at)
VALUES ($1::text, $2::text, $3::bigint, $4::text, $5::text, $6::text, $7::timestamptz)
ON CONFLICT (reference) DO UPDATE SET reference = network_record.reference
RETURNING outcome, network_ref""",
    ("reference", "kind", "amount", "currency", "outcome", "network_ref", "now"),
)

# processing → completed or failed: the card destroyed, two ledger lines (completed only),
# the statement's row, the event and the stored answer, all or nothing.
PROCESS_SETTLE = Statement(
    "process_settle",
    """
WITH settled AS (
    UPDATE charge
    SET state = $2::text, card_sealed = NULL, network_ref = $3::text, changed_at = $4::timestamptz
    WHERE id = $1::uuid AND state = 'processing'
    RETURNING id, amount, currency
),
lines AS (
    INSERT INTO book_line (posting, book, charge_id, debit, credit, currency, written_at)
    SELECT $5::uuid, side.book, s.id, side.debit * s.amount, side.credit * s.amount,
           s.currency, $4
    FROM settled AS s
    CROSS JOIN (VALUES ('customer_cards', 1, 0), ('merchant_payable', 0, 1))
        AS side (book, debit, credit)
    WHERE $2 = 'completed'
),
moved AS (
    INSERT INTO money_move (id, kind, charge_id, amount, currency, outcome, moved_at)
    SELECT $6::uuid, 'charge', id, amount, currency,
           CASE WHEN $2 = 'completed' THEN 'succeeded' ELSE 'failed' END, $4
    FROM settled
),
told AS (
    INSERT INTO outbox (topic, payload, written_at)
    SELECT 'payment.' || $2, $7::text, $4 FROM settled
),
answered AS (
    UPDATE replay SET reply_status = 200, reply_body = $7
    WHERE shopper_id = $8::uuid AND idem_key = $9::text AND EXISTS (SELECT FROM settled)
)
SELECT count(*) AS settled FROM settled""",
    ("charge", "state", "network_ref", "now", "posting", "move", "reply", "shopper", "key"),
)

# Claim the key and hold the refund's amount on the charge (under the row's lock), or
# neither; $7 NULL holds all that is left.
REFUND_BEGIN = Statement(
    "refund_begin",
    f"""
WITH {_LIVE},
claim AS (
    INSERT INTO replay (shopper_id, idem_key, request_hash, claimed_at)
    SELECT shopper_id, $3::text, $4::bytea, $5::timestamptz FROM live
    ON CONFLICT (shopper_id, idem_key) DO NOTHING
    RETURNING shopper_id
),
target AS (
    SELECT c.id, c.amount - c.refunded - c.refund_held AS room
    FROM charge AS c JOIN claim ON c.shopper_id = claim.shopper_id
    WHERE c.id = $6::uuid AND c.state IN ('completed', 'partially_refunded')
    FOR UPDATE OF c
),
held AS (
    UPDATE charge AS c
    SET refund_held = c.refund_held + coalesce($7::bigint, t.room), changed_at = $5
    FROM target AS t
    WHERE c.id = t.id AND coalesce($7, t.room) BETWEEN 1 AND t.room
    RETURNING c.id, c.currency, c.network_ref, coalesce($7, t.room) AS taken
),
asked AS (
    INSERT INTO give_back (id, charge_id, amount, reason, state, asked_at)
    SELECT $8::uuid, id, taken, $9::text, 'pending', $5 FROM held
)
SELECT EXISTS (SELECT FROM live) AS live, EXISTS (SELECT FROM claim) AS claimed,
       held.currency, held.network_ref, held.taken,
       prior.request_hash, prior.reply_status, prior.reply_body,
       seen.state AS seen_state
FROM (VALUES (1)) AS one (x)
LEFT JOIN held ON true
{_PRIOR}
LEFT JOIN charge AS seen ON seen.id = $6 AND seen.shopper_id = $2""",  # noqa: S608 - composed of this module's constants only
    ("login", "shopper", "key", "request_hash", "now", "charge", "amount", "refund", "reason"),
)

# pending refund → succeeded: the charge's totals and state, two ledger lines, the
# statement's row, the event and the stored answer, all or nothing.
REFUND_SETTLE = Statement(
    "refund_settle",
    """
WITH done AS (
    UPDATE give_back SET state = 'succeeded', network_ref = $2::text, settled_at = $3::timestamptz
    WHERE id = $1::uuid AND state = 'pending'
    RETURNING charge_id, amount
),
after AS (
    UPDATE charge AS c
    SET refunded = c.refunded + d.amount, refund_held = c.refund_held - d.amount,
        state = CASE WHEN c.refunded + d.amount = c.amount
                     THEN 'refunded' ELSE 'partially_refunded' END,
        changed_at = $3
    FROM done AS d
    WHERE c.id = d.charge_id
    RETURNING c.id, c.currency, c.state, d.amount
),
lines AS (
    INSERT INTO book_line (posting, book, charge_id, debit, credit, currency, written_at)
    SELECT $4::uuid, side.book, a.id, side.debit * a.amount, side.credit * a.amount,
           a.currency, $3
    FROM after AS a
    CROSS JOIN (VALUES ('merchant_payable', 1, 0), ('customer_cards', 0, 1))
        AS side (book, debit, credit)
),
moved AS (
    INSERT INTO money_move (id, kind, charge_id, amount, currency, outcome, moved_at)
    SELECT $1, 'refund', id, amount, currency, 'succeeded', $3 FROM after
),
told AS (
    INSERT INTO outbox (topic, payload, written_at)
    SELECT 'refund.created', $5::text, $3 FROM after
),
answered AS (
    UPDATE replay SET reply_status = 201, reply_body = $5
    WHERE shopper_id = $6::uuid AND idem_key = $7::text AND EXISTS (SELECT FROM after)
)
SELECT state FROM after""",
    ("refund", "network_ref", "now", "posting", "reply", "shopper", "key"),
)

# A claimed key whose request was refused keeps the refusal as its answer.
REPLY = Statement(
    "reply",
    """
UPDATE replay SET reply_status = $3::smallint, reply_body = $4::text
WHERE shopper_id = $1::uuid AND idem_key = $2::text AND reply_status IS NULL""",
    ("shopper", "key", "status", "reply"),
)

STATUS = Statement(
    "status",
    """
SELECT EXISTS (
           SELECT FROM login
           WHERE id = $1::uuid AND shopper_id = $2::uuid
             AND revoked_at IS NULL AND expires_at > now()
       ) AS live,
       c.state, c.amount, c.refunded, c.currency, c.changed_at
FROM (VALUES (1)) AS one (x)
LEFT JOIN charge AS c ON c.id = $3::uuid AND c.shopper_id = $2""",
    ("login", "shopper", "charge"),
)

REGISTER = Statement(
    "register",
    """
INSERT INTO shopper (id, email, name, secret_hash, joined_at)
VALUES ($1::uuid, $2::text, $3::text, $4::text, $5::timestamptz)
ON CONFLICT (email) DO NOTHING
RETURNING id""",
    ("shopper", "email", "name", "secret_hash", "now"),
)

FIND_SHOPPER = Statement(
    "find_shopper", "SELECT id, secret_hash FROM shopper WHERE email = $1::text", ("email",)
)

OPEN_LOGIN = Statement(
    "open_login",
    "INSERT INTO login (id, shopper_id, expires_at) VALUES ($1::uuid, $2::uuid, $3::timestamptz)",
    ("login", "shopper", "expires"),
)

REVOKE_LOGIN = Statement(
    "revoke_login",
    """
UPDATE login SET revoked_at = now()
WHERE id = $1::uuid AND shopper_id = $2::uuid AND revoked_at IS NULL""",
    ("login", "shopper"),
)

# --- pgbench: the same statements, one lifecycle per pgbench transaction ------------------

# How pgbench fills each parameter: a variable it draws per transaction (`:name`), one it is
# given once (-D), or an SQL expression.
_PGBENCH_VALUES = {
    "login": ":login",
    "shopper": ":shopper",
    "request_hash": "'\\x00'",
    "reply": "'bench'",  # no colon: pgbench would read ":name" as a variable
    "now": "now()",
    "charge": ":charge",
    "amount": "2500",
    "currency": "'USD'",
    "brand": "'visa'",
    "last4": "'4242'",
    "exp_month": "12",
    "exp_year": "2035",
    "sealed": "'\\x000102030405060708090a0b0c0d0e0f'",
    "reference": ":charge",
    "kind": "'charge'",
    "outcome": "'succeeded'",
    "network_ref": "'sim'",
    "state": "'completed'",
    "refund": ":refund",
    "reason": "'requested_by_customer'",
}

PARTS: dict[str, list[tuple[Statement, dict[str, str]]]] = {
    "create": [(CREATE, {"key": ":create_key"})],
    "process": [
        (PROCESS_BEGIN, {"key": ":process_key"}),
        (NETWORK, {}),
        (PROCESS_SETTLE, {"key": ":process_key", "posting": ":charge_posting", "move": ":move"}),
    ],
    "status": [(STATUS, {})],
    "refund": [
        (REFUND_BEGIN, {"key": ":refund_key", "amount": "1000"}),
        (NETWORK, {"reference": ":refund", "kind": "'refund'", "amount": "1000"}),
        (REFUND_SETTLE, {"key": ":refund_key", "posting": ":refund_posting"}),
    ],
}


def pgbench_statement(statement: Statement, overrides: dict[str, str]) -> str:
    values = {**_PGBENCH_VALUES, **overrides}

    def value(match: re.Match[str]) -> str:
        return values[statement.params[int(match.group(1)) - 1]]

    return " ".join(_PARAM.sub(value, statement.text).split()) + ";"


def pgbench_script(parts: list[str]) -> str:
    """One pgbench transaction = one lifecycle made of `parts`; `login` and `shopper` come
    from pgbench -D. The first line draws the lifecycle's ids and its requests'
    Idempotency-Keys (the app draws ids in Python; the keys come from the client)."""
    draws = ", ".join(
        f"gen_random_uuid(){cast} AS {name}"
        for name, cast in (
            ("charge", ""),
            ("refund", ""),
            ("charge_posting", ""),
            ("refund_posting", ""),
            ("move", ""),
            ("create_key", "::text"),
            ("process_key", "::text"),
            ("refund_key", "::text"),
        )
    )
    lines = [f"SELECT {draws} \\gset"]
    for part in parts:
        lines.extend(pgbench_statement(s, o) for s, o in PARTS[part])
    return "\n".join(lines) + "\n"
