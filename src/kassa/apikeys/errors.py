from __future__ import annotations

from kassa.errors import KassaError


class ApiKeyNotFound(KassaError):
    def __init__(self) -> None:
        super().__init__("api_key_not_found", 404, "No such API key.", title="Not Found")
