from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, TypeVar, cast
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.delivery_status import DeliveryStatus

T = TypeVar("T", bound="AttemptOut")


@_attrs_define
class AttemptOut:
    """
    Attributes:
        id (UUID):
        delivery_id (UUID):
        event_id (UUID):
        event_type (str):
        attempt (int): 1 for the first attempt of a delivery, then 2, 3, …
        status (DeliveryStatus):
        response_status (int | None): The endpoint's HTTP status, if it answered
        error (None | str):
        duration_ms (int):
        created_at (datetime.datetime):
    """

    id: UUID
    delivery_id: UUID
    event_id: UUID
    event_type: str
    attempt: int
    status: DeliveryStatus
    response_status: int | None
    error: None | str
    duration_ms: int
    created_at: datetime.datetime
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        id = str(self.id)

        delivery_id = str(self.delivery_id)

        event_id = str(self.event_id)

        event_type = self.event_type

        attempt = self.attempt

        status = self.status.value

        response_status: int | None
        response_status = self.response_status

        error: None | str
        error = self.error

        duration_ms = self.duration_ms

        created_at = self.created_at.isoformat()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "id": id,
                "delivery_id": delivery_id,
                "event_id": event_id,
                "event_type": event_type,
                "attempt": attempt,
                "status": status,
                "response_status": response_status,
                "error": error,
                "duration_ms": duration_ms,
                "created_at": created_at,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        id = UUID(d.pop("id"))

        delivery_id = UUID(d.pop("delivery_id"))

        event_id = UUID(d.pop("event_id"))

        event_type = d.pop("event_type")

        attempt = d.pop("attempt")

        status = DeliveryStatus(d.pop("status"))

        def _parse_response_status(data: object) -> int | None:
            if data is None:
                return data
            return cast(int | None, data)

        response_status = _parse_response_status(d.pop("response_status"))

        def _parse_error(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        error = _parse_error(d.pop("error"))

        duration_ms = d.pop("duration_ms")

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        attempt_out = cls(
            id=id,
            delivery_id=delivery_id,
            event_id=event_id,
            event_type=event_type,
            attempt=attempt,
            status=status,
            response_status=response_status,
            error=error,
            duration_ms=duration_ms,
            created_at=created_at,
        )

        attempt_out.additional_properties = d
        return attempt_out

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
