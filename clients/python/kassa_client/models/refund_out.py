from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, TypeVar, cast
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.transaction_status import TransactionStatus

T = TypeVar("T", bound="RefundOut")


@_attrs_define
class RefundOut:
    """
    Attributes:
        id (UUID):
        payment_id (UUID):
        amount (int):
        currency (str):
        status (TransactionStatus):
        reason (None | str):
        livemode (bool): Whether this is a live-mode object (false: test mode)
        created_at (datetime.datetime):
    """

    id: UUID
    payment_id: UUID
    amount: int
    currency: str
    status: TransactionStatus
    reason: None | str
    livemode: bool
    created_at: datetime.datetime
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        id = str(self.id)

        payment_id = str(self.payment_id)

        amount = self.amount

        currency = self.currency

        status = self.status.value

        reason: None | str
        reason = self.reason

        livemode = self.livemode

        created_at = self.created_at.isoformat()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "id": id,
                "payment_id": payment_id,
                "amount": amount,
                "currency": currency,
                "status": status,
                "reason": reason,
                "livemode": livemode,
                "created_at": created_at,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        id = UUID(d.pop("id"))

        payment_id = UUID(d.pop("payment_id"))

        amount = d.pop("amount")

        currency = d.pop("currency")

        status = TransactionStatus(d.pop("status"))

        def _parse_reason(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        reason = _parse_reason(d.pop("reason"))

        livemode = d.pop("livemode")

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        refund_out = cls(
            id=id,
            payment_id=payment_id,
            amount=amount,
            currency=currency,
            status=status,
            reason=reason,
            livemode=livemode,
            created_at=created_at,
        )

        refund_out.additional_properties = d
        return refund_out

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
