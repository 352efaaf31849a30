from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define

from ..models.capture_method import CaptureMethod
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.metadata import Metadata


T = TypeVar("T", bound="CreateCheckoutSessionRequest")


@_attrs_define
class CreateCheckoutSessionRequest:
    """
    Attributes:
        amount (int): Minor units of the currency (1050 = 10.50 USD)
        currency (str):
        success_url (str): An absolute http(s) URL; `{CHECKOUT_SESSION_ID}` in it is replaced by the session's id
        cancel_url (str): An absolute http(s) URL; `{CHECKOUT_SESSION_ID}` in it is replaced by the session's id
        description (None | str | Unset):
        capture (CaptureMethod | Unset):
        metadata (Metadata | None | Unset):
    """

    amount: int
    currency: str
    success_url: str
    cancel_url: str
    description: None | str | Unset = UNSET
    capture: CaptureMethod | Unset = UNSET
    metadata: Metadata | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        from ..models.metadata import Metadata  # noqa: PLC0415

        amount = self.amount

        currency = self.currency

        success_url = self.success_url

        cancel_url = self.cancel_url

        description: None | str | Unset
        if isinstance(self.description, Unset):
            description = UNSET
        else:
            description = self.description

        capture: str | Unset = UNSET
        if not isinstance(self.capture, Unset):
            capture = self.capture.value

        metadata: dict[str, Any] | None | Unset
        if isinstance(self.metadata, Unset):
            metadata = UNSET
        elif isinstance(self.metadata, Metadata):
            metadata = self.metadata.to_dict()
        else:
            metadata = self.metadata

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "amount": amount,
                "currency": currency,
                "success_url": success_url,
                "cancel_url": cancel_url,
            }
        )
        if description is not UNSET:
            field_dict["description"] = description
        if capture is not UNSET:
            field_dict["capture"] = capture
        if metadata is not UNSET:
            field_dict["metadata"] = metadata

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.metadata import Metadata  # noqa: PLC0415

        d = dict(src_dict)
        amount = d.pop("amount")

        currency = d.pop("currency")

        success_url = d.pop("success_url")

        cancel_url = d.pop("cancel_url")

        def _parse_description(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        description = _parse_description(d.pop("description", UNSET))

        _capture = d.pop("capture", UNSET)
        capture: CaptureMethod | Unset
        if isinstance(_capture, Unset):
            capture = UNSET
        else:
            capture = CaptureMethod(_capture)

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

        create_checkout_session_request = cls(
            amount=amount,
            currency=currency,
            success_url=success_url,
            cancel_url=cancel_url,
            description=description,
            capture=capture,
            metadata=metadata,
        )

        return create_checkout_session_request
