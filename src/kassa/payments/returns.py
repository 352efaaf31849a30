"""Where a customer comes back to kassa after authenticating at a processor's own page
(Stripe's 3-D Secure page): `/payments/{id}/return?sig=…`, signed so that only the URL kassa
gave the processor resumes the payment and sends the customer on to the merchant's
`return_url`. (The simulator's page resumes the payment itself and needs none.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReturnPages:
    public_url: str
    key: bytes

    def _sig(self, payment_id: uuid.UUID) -> str:
        digest = hmac.new(self.key, payment_id.bytes, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def url_for(self, payment_id: uuid.UUID) -> str:
        return f"{self.public_url}/payments/{payment_id}/return?sig={self._sig(payment_id)}"

    def valid(self, payment_id: uuid.UUID, sig: str) -> bool:
        return hmac.compare_digest(self._sig(payment_id), sig)
