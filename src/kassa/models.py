"""Imports every domain's models so that `Base.metadata` knows every table (Alembic)."""

from __future__ import annotations


def import_all_models() -> None:
    from kassa.apikeys import models as _apikeys  # noqa: F401
    from kassa.auditlog import models as _auditlog  # noqa: F401
    from kassa.auth import models as _auth  # noqa: F401
    from kassa.events import models as _events  # noqa: F401
    from kassa.idempotency import models as _idempotency  # noqa: F401
    from kassa.ledger import models as _ledger  # noqa: F401
    from kassa.payments import models as _payments  # noqa: F401
    from kassa.processors import customers as _customers  # noqa: F401
    from kassa.processors import simulator_store as _simulator  # noqa: F401
    from kassa.refunds import models as _refunds  # noqa: F401
    from kassa.transactions import models as _transactions  # noqa: F401
    from kassa.vault import fingerprint as _fingerprint  # noqa: F401
    from kassa.webhooks import models as _webhooks  # noqa: F401
