from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

from ..types import UNSET, Unset

T = TypeVar("T", bound="CardDetailsIn")


@_attrs_define
class CardDetailsIn:
    """
    Attributes:
        number (str): 12–19 digits; spaces/dashes allowed
        exp_month (int):
        exp_year (int): Four digits
        cvc (str): 3 or 4 digits
        holder_name (None | str | Unset):
    """

    number: str
    exp_month: int
    exp_year: int
    cvc: str
    holder_name: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        number = self.number

        exp_month = self.exp_month

        exp_year = self.exp_year

        cvc = self.cvc

        holder_name: None | str | Unset
        if isinstance(self.holder_name, Unset):
            holder_name = UNSET
        else:
            holder_name = self.holder_name

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "number": number,
                "exp_month": exp_month,
                "exp_year": exp_year,
                "cvc": cvc,
            }
        )
        if holder_name is not UNSET:
            field_dict["holder_name"] = holder_name

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        number = d.pop("number")

        exp_month = d.pop("exp_month")

        exp_year = d.pop("exp_year")

        cvc = d.pop("cvc")

        def _parse_holder_name(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        holder_name = _parse_holder_name(d.pop("holder_name", UNSET))

        card_details_in = cls(
            number=number,
            exp_month=exp_month,
            exp_year=exp_year,
            cvc=cvc,
            holder_name=holder_name,
        )

        return card_details_in
