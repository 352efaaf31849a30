from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.audit_action import AuditAction
from ..models.audit_event_out_actor_type import AuditEventOutActorType

if TYPE_CHECKING:
    from ..models.audit_event_out_details_type_0 import AuditEventOutDetailsType0


T = TypeVar("T", bound="AuditEventOut")


@_attrs_define
class AuditEventOut:
    """
    Attributes:
        id (UUID):
        action (AuditAction):
        actor_type (AuditEventOutActorType): Who acted: a user, an API key, or nobody known
        actor_id (None | UUID): The user's or the key's id (never a secret)
        object_type (str):
        object_id (None | UUID):
        livemode (bool | None): The object's mode; null for account events
        ip (None | str): The client's IP address, as kassa's edge saw it
        request_id (None | str): The X-Request-ID of the request that acted
        details (AuditEventOutDetailsType0 | None): What else the action says (a refund: payment_id, amount, currency)
        created_at (datetime.datetime):
    """

    id: UUID
    action: AuditAction
    actor_type: AuditEventOutActorType
    actor_id: None | UUID
    object_type: str
    object_id: None | UUID
    livemode: bool | None
    ip: None | str
    request_id: None | str
    details: AuditEventOutDetailsType0 | None
    created_at: datetime.datetime
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.audit_event_out_details_type_0 import AuditEventOutDetailsType0  # noqa: PLC0415

        id = str(self.id)

        action = self.action.value

        actor_type = self.actor_type.value

        actor_id: None | str
        if isinstance(self.actor_id, UUID):
            actor_id = str(self.actor_id)
        else:
            actor_id = self.actor_id

        object_type = self.object_type

        object_id: None | str
        if isinstance(self.object_id, UUID):
            object_id = str(self.object_id)
        else:
            object_id = self.object_id

        livemode: bool | None
        livemode = self.livemode

        ip: None | str
        ip = self.ip

        request_id: None | str
        request_id = self.request_id

        details: dict[str, Any] | None
        if isinstance(self.details, AuditEventOutDetailsType0):
            details = self.details.to_dict()
        else:
            details = self.details

        created_at = self.created_at.isoformat()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "id": id,
                "action": action,
                "actor_type": actor_type,
                "actor_id": actor_id,
                "object_type": object_type,
                "object_id": object_id,
                "livemode": livemode,
                "ip": ip,
                "request_id": request_id,
                "details": details,
                "created_at": created_at,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.audit_event_out_details_type_0 import AuditEventOutDetailsType0  # noqa: PLC0415

        d = dict(src_dict)
        id = UUID(d.pop("id"))

        action = AuditAction(d.pop("action"))

        actor_type = AuditEventOutActorType(d.pop("actor_type"))

        def _parse_actor_id(data: object) -> None | UUID:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                actor_id_type_0 = UUID(data)

                return actor_id_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | UUID, data)

        actor_id = _parse_actor_id(d.pop("actor_id"))

        object_type = d.pop("object_type")

        def _parse_object_id(data: object) -> None | UUID:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                object_id_type_0 = UUID(data)

                return object_id_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | UUID, data)

        object_id = _parse_object_id(d.pop("object_id"))

        def _parse_livemode(data: object) -> bool | None:
            if data is None:
                return data
            return cast(bool | None, data)

        livemode = _parse_livemode(d.pop("livemode"))

        def _parse_ip(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        ip = _parse_ip(d.pop("ip"))

        def _parse_request_id(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        request_id = _parse_request_id(d.pop("request_id"))

        def _parse_details(data: object) -> AuditEventOutDetailsType0 | None:
            if data is None:
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                details_type_0 = AuditEventOutDetailsType0.from_dict(data)

                return details_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(AuditEventOutDetailsType0 | None, data)

        details = _parse_details(d.pop("details"))

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        audit_event_out = cls(
            id=id,
            action=action,
            actor_type=actor_type,
            actor_id=actor_id,
            object_type=object_type,
            object_id=object_id,
            livemode=livemode,
            ip=ip,
            request_id=request_id,
            details=details,
            created_at=created_at,
        )

        audit_event_out.additional_properties = d
        return audit_event_out

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
