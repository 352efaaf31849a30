from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, TypeVar
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.payment_status import PaymentStatus

T = TypeVar("T", bound="PaymentStatusOut")


@_attrs_define
class PaymentStatusOut:
    """
    Attributes:
        id (UUID):
        status (PaymentStatus):
        amount (int):
        amount_captured (int):
        amount_refunded (int):
        currency (str):
        updated_at (datetime.datetime):
    """

    id: UUID
    status: PaymentStatus
    amount: int
    amount_captured: int
    amount_refunded: int
    currency: str
    updated_at: datetime.datetime
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        id = str(self.id)

        status = self.status.value

        amount = self.amount

        amount_captured = self.amount_captured

        amount_refunded = self.amount_refunded

        currency = self.currency

        updated_at = self.updated_at.isoformat()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "id": id,
                "status": status,
                "amount": amount,
                "amount_captured": amount_captured,
                "amount_refunded": amount_refunded,
                "currency": currency,
                "updated_at": updated_at,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        id = UUID(d.pop("id"))

        status = PaymentStatus(d.pop("status"))

        amount = d.pop("amount")

        amount_captured = d.pop("amount_captured")

        amount_refunded = d.pop("amount_refunded")

        currency = d.pop("currency")

        updated_at = datetime.datetime.fromisoformat(d.pop("updated_at"))

        payment_status_out = cls(
            id=id,
            status=status,
            amount=amount,
            amount_captured=amount_captured,
            amount_refunded=amount_refunded,
            currency=currency,
            updated_at=updated_at,
        )

        payment_status_out.additional_properties = d
        return payment_status_out

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
