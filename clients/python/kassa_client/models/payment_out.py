from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.payment_method import PaymentMethod
from ..models.payment_out_capture import PaymentOutCapture
from ..models.payment_status import PaymentStatus

if TYPE_CHECKING:
    from ..models.card_details_out import CardDetailsOut
    from ..models.metadata import Metadata
    from ..models.next_action_out import NextActionOut
    from ..models.wallet_details_out import WalletDetailsOut


T = TypeVar("T", bound="PaymentOut")


@_attrs_define
class PaymentOut:
    """
    Attributes:
        id (UUID):
        user_id (UUID):
        status (PaymentStatus):
        amount (int):
        amount_captured (int): What the charge took (0 until it is captured)
        amount_refunded (int):
        currency (str):
        capture (PaymentOutCapture):
        next_action (NextActionOut | None): With requires_action
        payment_method (PaymentMethod):
        details (CardDetailsOut | WalletDetailsOut): Cards: {brand, last4, exp_month, exp_year, holder_name}; wallets:
            {wallet}
        description (None | str):
        metadata (Metadata): Up to 20 string keys (1–40 characters) to string values
        failure_code (None | str):
        failure_message (None | str):
        livemode (bool): Whether this is a live-mode object (false: test mode)
        created_at (datetime.datetime):
        updated_at (datetime.datetime):
    """

    id: UUID
    user_id: UUID
    status: PaymentStatus
    amount: int
    amount_captured: int
    amount_refunded: int
    currency: str
    capture: PaymentOutCapture
    next_action: NextActionOut | None
    payment_method: PaymentMethod
    details: CardDetailsOut | WalletDetailsOut
    description: None | str
    metadata: Metadata
    failure_code: None | str
    failure_message: None | str
    livemode: bool
    created_at: datetime.datetime
    updated_at: datetime.datetime
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.card_details_out import CardDetailsOut  # noqa: PLC0415
        from ..models.next_action_out import NextActionOut  # noqa: PLC0415

        id = str(self.id)

        user_id = str(self.user_id)

        status = self.status.value

        amount = self.amount

        amount_captured = self.amount_captured

        amount_refunded = self.amount_refunded

        currency = self.currency

        capture = self.capture.value

        next_action: dict[str, Any] | None
        if isinstance(self.next_action, NextActionOut):
            next_action = self.next_action.to_dict()
        else:
            next_action = self.next_action

        payment_method = self.payment_method.value

        details: dict[str, Any]
        if isinstance(self.details, CardDetailsOut):
            details = self.details.to_dict()
        else:
            details = self.details.to_dict()

        description: None | str
        description = self.description

        metadata = self.metadata.to_dict()

        failure_code: None | str
        failure_code = self.failure_code

        failure_message: None | str
        failure_message = self.failure_message

        livemode = self.livemode

        created_at = self.created_at.isoformat()

        updated_at = self.updated_at.isoformat()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "id": id,
                "user_id": user_id,
                "status": status,
                "amount": amount,
                "amount_captured": amount_captured,
                "amount_refunded": amount_refunded,
                "currency": currency,
                "capture": capture,
                "next_action": next_action,
                "payment_method": payment_method,
                "details": details,
                "description": description,
                "metadata": metadata,
                "failure_code": failure_code,
                "failure_message": failure_message,
                "livemode": livemode,
                "created_at": created_at,
                "updated_at": updated_at,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.card_details_out import CardDetailsOut  # noqa: PLC0415
        from ..models.metadata import Metadata  # noqa: PLC0415
        from ..models.next_action_out import NextActionOut  # noqa: PLC0415
        from ..models.wallet_details_out import WalletDetailsOut  # noqa: PLC0415

        d = dict(src_dict)
        id = UUID(d.pop("id"))

        user_id = UUID(d.pop("user_id"))

        status = PaymentStatus(d.pop("status"))

        amount = d.pop("amount")

        amount_captured = d.pop("amount_captured")

        amount_refunded = d.pop("amount_refunded")

        currency = d.pop("currency")

        capture = PaymentOutCapture(d.pop("capture"))

        def _parse_next_action(data: object) -> NextActionOut | None:
            if data is None:
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                next_action_type_0 = NextActionOut.from_dict(data)

                return next_action_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(NextActionOut | None, data)

        next_action = _parse_next_action(d.pop("next_action"))

        payment_method = PaymentMethod(d.pop("payment_method"))

        def _parse_details(data: object) -> CardDetailsOut | WalletDetailsOut:
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                details_type_0 = CardDetailsOut.from_dict(data)

                return details_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            if not isinstance(data, dict):
                raise TypeError()
            details_type_1 = WalletDetailsOut.from_dict(data)

            return details_type_1

        details = _parse_details(d.pop("details"))

        def _parse_description(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        description = _parse_description(d.pop("description"))

        metadata = Metadata.from_dict(d.pop("metadata"))

        def _parse_failure_code(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        failure_code = _parse_failure_code(d.pop("failure_code"))

        def _parse_failure_message(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        failure_message = _parse_failure_message(d.pop("failure_message"))

        livemode = d.pop("livemode")

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        updated_at = datetime.datetime.fromisoformat(d.pop("updated_at"))

        payment_out = cls(
            id=id,
            user_id=user_id,
            status=status,
            amount=amount,
            amount_captured=amount_captured,
            amount_refunded=amount_refunded,
            currency=currency,
            capture=capture,
            next_action=next_action,
            payment_method=payment_method,
            details=details,
            description=description,
            metadata=metadata,
            failure_code=failure_code,
            failure_message=failure_message,
            livemode=livemode,
            created_at=created_at,
            updated_at=updated_at,
        )

        payment_out.additional_properties = d
        return payment_out

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
