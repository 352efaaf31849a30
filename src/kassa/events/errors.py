from __future__ import annotations

from kassa.errors import NotFound


class EventNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("event")
        self.code = "event_not_found"
        self.title = "Event Not Found"
