from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define

from ..models.card_payment_request_capture_type_0 import CardPaymentRequestCaptureType0
from ..models.card_payment_request_payment_method import CardPaymentRequestPaymentMethod
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.card_details_in import CardDetailsIn
    from ..models.metadata import Metadata


T = TypeVar("T", bound="CardPaymentRequest")


@_attrs_define
class CardPaymentRequest:
    """
    Attributes:
        amount (int): Minor units of the currency (1050 = 10.50 USD)
        currency (str):
        payment_method (CardPaymentRequestPaymentMethod):
        details (CardDetailsIn):
        description (None | str | Unset):
        metadata (Metadata | None | Unset):
        capture (CardPaymentRequestCaptureType0 | None | Unset): automatic (the default): process charges; manual:
            process authorizes, and capture charges later
    """

    amount: int
    currency: str
    payment_method: CardPaymentRequestPaymentMethod
    details: CardDetailsIn
    description: None | str | Unset = UNSET
    metadata: Metadata | None | Unset = UNSET
    capture: CardPaymentRequestCaptureType0 | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        from ..models.metadata import Metadata  # noqa: PLC0415

        amount = self.amount

        currency = self.currency

        payment_method = self.payment_method.value

        details = self.details.to_dict()

        description: None | str | Unset
        if isinstance(self.description, Unset):
            description = UNSET
        else:
            description = self.description

        metadata: dict[str, Any] | None | Unset
        if isinstance(self.metadata, Unset):
            metadata = UNSET
        elif isinstance(self.metadata, Metadata):
            metadata = self.metadata.to_dict()
        else:
            metadata = self.metadata

        capture: None | str | Unset
        if isinstance(self.capture, Unset):
            capture = UNSET
        elif isinstance(self.capture, CardPaymentRequestCaptureType0):
            capture = self.capture.value
        else:
            capture = self.capture

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "amount": amount,
                "currency": currency,
                "payment_method": payment_method,
                "details": details,
            }
        )
        if description is not UNSET:
            field_dict["description"] = description
        if metadata is not UNSET:
            field_dict["metadata"] = metadata
        if capture is not UNSET:
            field_dict["capture"] = capture

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.card_details_in import CardDetailsIn  # noqa: PLC0415
        from ..models.metadata import Metadata  # noqa: PLC0415

        d = dict(src_dict)
        amount = d.pop("amount")

        currency = d.pop("currency")

        payment_method = CardPaymentRequestPaymentMethod(d.pop("payment_method"))

        details = CardDetailsIn.from_dict(d.pop("details"))

        def _parse_description(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        description = _parse_description(d.pop("description", UNSET))

        def _parse_metadata(data: object) -> Metadata | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                metadata_type_0 = Metadata.from_dict(data)

                return metadata_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(Metadata | None | Unset, data)

        metadata = _parse_metadata(d.pop("metadata", UNSET))

        def _parse_capture(data: object) -> CardPaymentRequestCaptureType0 | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                capture_type_0 = CardPaymentRequestCaptureType0(data)

                return capture_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(CardPaymentRequestCaptureType0 | None | Unset, data)

        capture = _parse_capture(d.pop("capture", UNSET))

        card_payment_request = cls(
            amount=amount,
            currency=currency,
            payment_method=payment_method,
            details=details,
            description=description,
            metadata=metadata,
            capture=capture,
        )

        return card_payment_request
