from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.capture_method import CaptureMethod
from ..models.checkout_session_out_status import CheckoutSessionOutStatus

if TYPE_CHECKING:
    from ..models.metadata import Metadata


T = TypeVar("T", bound="CheckoutSessionOut")


@_attrs_define
class CheckoutSessionOut:
    """
    Attributes:
        id (UUID):
        url (str): kassa's page for this session: send the customer there
        status (CheckoutSessionOutStatus):
        amount (int):
        currency (str):
        description (None | str):
        capture (CaptureMethod):
        metadata (Metadata): Up to 20 string keys (1–40 characters) to string values
        success_url (str):
        cancel_url (str):
        payment_id (None | UUID): The payment that completed the session
        livemode (bool):
        created_at (datetime.datetime):
        expires_at (datetime.datetime):
        completed_at (datetime.datetime | None):
    """

    id: UUID
    url: str
    status: CheckoutSessionOutStatus
    amount: int
    currency: str
    description: None | str
    capture: CaptureMethod
    metadata: Metadata
    success_url: str
    cancel_url: str
    payment_id: None | UUID
    livemode: bool
    created_at: datetime.datetime
    expires_at: datetime.datetime
    completed_at: datetime.datetime | None
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        id = str(self.id)

        url = self.url

        status = self.status.value

        amount = self.amount

        currency = self.currency

        description: None | str
        description = self.description

        capture = self.capture.value

        metadata = self.metadata.to_dict()

        success_url = self.success_url

        cancel_url = self.cancel_url

        payment_id: None | str
        if isinstance(self.payment_id, UUID):
            payment_id = str(self.payment_id)
        else:
            payment_id = self.payment_id

        livemode = self.livemode

        created_at = self.created_at.isoformat()

        expires_at = self.expires_at.isoformat()

        completed_at: None | str
        if isinstance(self.completed_at, datetime.datetime):
            completed_at = self.completed_at.isoformat()
        else:
            completed_at = self.completed_at

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "id": id,
                "url": url,
                "status": status,
                "amount": amount,
                "currency": currency,
                "description": description,
                "capture": capture,
                "metadata": metadata,
                "success_url": success_url,
                "cancel_url": cancel_url,
                "payment_id": payment_id,
                "livemode": livemode,
                "created_at": created_at,
                "expires_at": expires_at,
                "completed_at": completed_at,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.metadata import Metadata  # noqa: PLC0415

        d = dict(src_dict)
        id = UUID(d.pop("id"))

        url = d.pop("url")

        status = CheckoutSessionOutStatus(d.pop("status"))

        amount = d.pop("amount")

        currency = d.pop("currency")

        def _parse_description(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        description = _parse_description(d.pop("description"))

        capture = CaptureMethod(d.pop("capture"))

        metadata = Metadata.from_dict(d.pop("metadata"))

        success_url = d.pop("success_url")

        cancel_url = d.pop("cancel_url")

        def _parse_payment_id(data: object) -> None | UUID:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                payment_id_type_0 = UUID(data)

                return payment_id_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | UUID, data)

        payment_id = _parse_payment_id(d.pop("payment_id"))

        livemode = d.pop("livemode")

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        expires_at = datetime.datetime.fromisoformat(d.pop("expires_at"))

        def _parse_completed_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                completed_at_type_0 = datetime.datetime.fromisoformat(data)

                return completed_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        completed_at = _parse_completed_at(d.pop("completed_at"))

        checkout_session_out = cls(
            id=id,
            url=url,
            status=status,
            amount=amount,
            currency=currency,
            description=description,
            capture=capture,
            metadata=metadata,
            success_url=success_url,
            cancel_url=cancel_url,
            payment_id=payment_id,
            livemode=livemode,
            created_at=created_at,
            expires_at=expires_at,
            completed_at=completed_at,
        )

        checkout_session_out.additional_properties = d
        return checkout_session_out

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
