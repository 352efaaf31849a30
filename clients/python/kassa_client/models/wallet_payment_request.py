from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from attrs import define as _attrs_define

from ..models.wallet_payment_request_capture_type_0 import WalletPaymentRequestCaptureType0
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.metadata import Metadata
    from ..models.wallet_details_in import WalletDetailsIn


T = TypeVar("T", bound="WalletPaymentRequest")


@_attrs_define
class WalletPaymentRequest:
    """
    Attributes:
        amount (int): Minor units of the currency (1050 = 10.50 USD)
        currency (str):
        payment_method (Literal['digital_wallet']):
        details (WalletDetailsIn):
        description (None | str | Unset):
        metadata (Metadata | None | Unset):
        capture (None | Unset | WalletPaymentRequestCaptureType0): automatic (the default): process charges; manual:
            process authorizes, and capture charges later
    """

    amount: int
    currency: str
    payment_method: Literal["digital_wallet"]
    details: WalletDetailsIn
    description: None | str | Unset = UNSET
    metadata: Metadata | None | Unset = UNSET
    capture: None | Unset | WalletPaymentRequestCaptureType0 = UNSET

    def to_dict(self) -> dict[str, Any]:
        from ..models.metadata import Metadata  # noqa: PLC0415

        amount = self.amount

        currency = self.currency

        payment_method = self.payment_method

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
        elif isinstance(self.capture, WalletPaymentRequestCaptureType0):
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
        from ..models.metadata import Metadata  # noqa: PLC0415
        from ..models.wallet_details_in import WalletDetailsIn  # noqa: PLC0415

        d = dict(src_dict)
        amount = d.pop("amount")

        currency = d.pop("currency")

        payment_method = cast(Literal["digital_wallet"], d.pop("payment_method"))
        if payment_method != "digital_wallet":
            raise ValueError(f"payment_method must match const 'digital_wallet', got '{payment_method}'")

        details = WalletDetailsIn.from_dict(d.pop("details"))

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

        def _parse_capture(data: object) -> None | Unset | WalletPaymentRequestCaptureType0:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                capture_type_0 = WalletPaymentRequestCaptureType0(data)

                return capture_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | Unset | WalletPaymentRequestCaptureType0, data)

        capture = _parse_capture(d.pop("capture", UNSET))

        wallet_payment_request = cls(
            amount=amount,
            currency=currency,
            payment_method=payment_method,
            details=details,
            description=description,
            metadata=metadata,
            capture=capture,
        )

        return wallet_payment_request
