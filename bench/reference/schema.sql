-- The lean reference's own schema (bench/reference): written for this app alone, in a
-- database of its own. Amounts are integers in minor units; every timestamp is UTC.

CREATE TABLE shopper (
    id          uuid PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    name        text NOT NULL,
    secret_hash text NOT NULL,
    joined_at   timestamptz NOT NULL
);

-- One row per login; a token names its row, and a revoked or expired row refuses it.
CREATE TABLE login (
    id         uuid PRIMARY KEY,
    shopper_id uuid NOT NULL REFERENCES shopper (id),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);

-- An Idempotency-Key claim: `reply_status` stays NULL while the claimed request runs, then
-- holds the answer that every repeat of the key replays.
CREATE TABLE replay (
    shopper_id   uuid NOT NULL,
    idem_key     text NOT NULL,
    request_hash bytea NOT NULL,
    reply_status smallint,
    reply_body   text,
    claimed_at   timestamptz NOT NULL,
    PRIMARY KEY (shopper_id, idem_key)
);

CREATE TABLE charge (
    id             uuid PRIMARY KEY,
    shopper_id     uuid NOT NULL REFERENCES shopper (id),
    state          text NOT NULL CHECK (state IN
                     ('pending', 'processing', 'completed', 'failed',
                      'partially_refunded', 'refunded')),
    amount         bigint NOT NULL CHECK (amount > 0),
    refunded       bigint NOT NULL DEFAULT 0,
    refund_held    bigint NOT NULL DEFAULT 0,
    currency       char(3) NOT NULL,
    card_brand     text NOT NULL,
    card_last4     char(4) NOT NULL,
    card_exp_month smallint NOT NULL,
    card_exp_year  smallint NOT NULL,
    card_sealed    bytea,  -- AES-GCM; NULL once the charge is settled
    network_ref    text,
    opened_at      timestamptz NOT NULL,
    changed_at     timestamptz NOT NULL,
    CHECK (refunded >= 0 AND refund_held >= 0 AND refunded + refund_held <= amount)
);
CREATE INDEX charge_by_shopper ON charge (shopper_id, opened_at);

CREATE TABLE give_back (
    id          uuid PRIMARY KEY,
    charge_id   uuid NOT NULL REFERENCES charge (id),
    amount      bigint NOT NULL CHECK (amount > 0),
    reason      text,
    state       text NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    network_ref text,
    asked_at    timestamptz NOT NULL,
    settled_at  timestamptz
);
CREATE INDEX give_back_by_charge ON give_back (charge_id);

-- Double entry: every posting is two lines whose debits equal their credits.
CREATE TABLE book_line (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    posting    uuid NOT NULL,
    book       text NOT NULL,
    charge_id  uuid NOT NULL,
    debit      bigint NOT NULL CHECK (debit >= 0),
    credit     bigint NOT NULL CHECK (credit >= 0),
    currency   char(3) NOT NULL,
    written_at timestamptz NOT NULL
);
CREATE INDEX book_line_by_charge ON book_line (charge_id);

-- What the customer's statement shows: one row per charge attempt and per refund.
CREATE TABLE money_move (
    id        uuid PRIMARY KEY,
    kind      text NOT NULL CHECK (kind IN ('charge', 'refund')),
    charge_id uuid NOT NULL,
    amount    bigint NOT NULL,
    currency  char(3) NOT NULL,
    outcome   text NOT NULL,
    moved_at  timestamptz NOT NULL
);
CREATE INDEX money_move_by_charge ON money_move (charge_id);

-- Events for webhooks, written in the same statement as the change they announce.
CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic      text NOT NULL,
    payload    text NOT NULL,
    written_at timestamptz NOT NULL,
    sent_at    timestamptz
);

-- The card network's side (a simulator): it remembers its first answer per reference, so
-- asking twice under one reference moves money once.
CREATE TABLE network_record (
    reference   text PRIMARY KEY,
    kind        text NOT NULL,
    amount      bigint NOT NULL,
    currency    char(3) NOT NULL,
    outcome     text NOT NULL,
    network_ref text NOT NULL,
    recorded_at timestamptz NOT NULL
);
