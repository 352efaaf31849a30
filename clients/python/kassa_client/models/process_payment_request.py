from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

from ..types import UNSET, Unset

T = TypeVar("T", bound="ProcessPaymentRequest")


@_attrs_define
class ProcessPaymentRequest:
    """
    Attributes:
        payment_id (None | str | Unset): The id of a pending payment (from create's answer)
        paymentId (None | str | Unset):
        return_url (None | str | Unset): Where the customer returns after authenticating (3-D Secure); https outside
            development
    """

    payment_id: None | str | Unset = UNSET
    paymentId: None | str | Unset = UNSET
    return_url: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        payment_id: None | str | Unset
        if isinstance(self.payment_id, Unset):
            payment_id = UNSET
        else:
            payment_id = self.payment_id

        paymentId: None | str | Unset
        if isinstance(self.paymentId, Unset):
            paymentId = UNSET
        else:
            paymentId = self.paymentId

        return_url: None | str | Unset
        if isinstance(self.return_url, Unset):
            return_url = UNSET
        else:
            return_url = self.return_url

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if payment_id is not UNSET:
            field_dict["payment_id"] = payment_id
        if paymentId is not UNSET:
            field_dict["paymentId"] = paymentId
        if return_url is not UNSET:
            field_dict["return_url"] = return_url

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)

        def _parse_payment_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        payment_id = _parse_payment_id(d.pop("payment_id", UNSET))

        def _parse_paymentId(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        paymentId = _parse_paymentId(d.pop("paymentId", UNSET))

        def _parse_return_url(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        return_url = _parse_return_url(d.pop("return_url", UNSET))

        process_payment_request = cls(
            payment_id=payment_id,
            paymentId=paymentId,
            return_url=return_url,
        )

        return process_payment_request
