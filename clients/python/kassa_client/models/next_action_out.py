from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="NextActionOut")


@_attrs_define
class NextActionOut:
    """
    Attributes:
        type_ (Literal['redirect_to_url']):
        url (str): Send the customer here to authenticate (3-D Secure)
        return_url (None | str): Where the customer comes back afterwards
    """

    type_: Literal["redirect_to_url"]
    url: str
    return_url: None | str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        type_ = self.type_

        url = self.url

        return_url: None | str
        return_url = self.return_url

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "type": type_,
                "url": url,
                "return_url": return_url,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        type_ = cast(Literal["redirect_to_url"], d.pop("type"))
        if type_ != "redirect_to_url":
            raise ValueError(f"type must match const 'redirect_to_url', got '{type_}'")

        url = d.pop("url")

        def _parse_return_url(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        return_url = _parse_return_url(d.pop("return_url"))

        next_action_out = cls(
            type_=type_,
            url=url,
            return_url=return_url,
        )

        next_action_out.additional_properties = d
        return next_action_out

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
