"""Connection-pool usage as metrics, from SQLAlchemy's own pool events (no polling)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import event

from kassa.db import Database

DB_CONNECTIONS_IN_USE = Gauge(
    "kassa_db_connections_in_use",
    "Database connections checked out of the pool, summed over worker processes.",
    multiprocess_mode="livesum",
)
DB_CONNECTIONS_OPENED = Counter(
    "kassa_db_connections_opened_total", "Database connections the pool has opened."
)


def instrument_pool(db: Database) -> None:
    pool = db.engine.sync_engine.pool

    def on_checkout(*_args: Any) -> None:
        DB_CONNECTIONS_IN_USE.inc()

    def on_checkin(*_args: Any) -> None:
        DB_CONNECTIONS_IN_USE.dec()

    def on_connect(*_args: Any) -> None:
        DB_CONNECTIONS_OPENED.inc()

    event.listen(pool, "checkout", on_checkout)
    event.listen(pool, "checkin", on_checkin)
    event.listen(pool, "connect", on_connect)
