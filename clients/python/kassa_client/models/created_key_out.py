from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, TypeVar
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.api_key_scope import ApiKeyScope
from ..models.mode import Mode

T = TypeVar("T", bound="CreatedKeyOut")


@_attrs_define
class CreatedKeyOut:
    """
    Attributes:
        id (UUID):
        name (str):
        mode (Mode):
        livemode (bool):
        scopes (list[ApiKeyScope]): The scopes the key may use
        last4 (str): The secret's last four characters, to tell keys apart
        created_at (datetime.datetime):
        secret (str): The secret key (`sk_test_…` / `sk_live_…`), shown only in this response
    """

    id: UUID
    name: str
    mode: Mode
    livemode: bool
    scopes: list[ApiKeyScope]
    last4: str
    created_at: datetime.datetime
    secret: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        id = str(self.id)

        name = self.name

        mode = self.mode.value

        livemode = self.livemode

        scopes = []
        for scopes_item_data in self.scopes:
            scopes_item = scopes_item_data.value
            scopes.append(scopes_item)

        last4 = self.last4

        created_at = self.created_at.isoformat()

        secret = self.secret

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "id": id,
                "name": name,
                "mode": mode,
                "livemode": livemode,
                "scopes": scopes,
                "last4": last4,
                "created_at": created_at,
                "secret": secret,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        id = UUID(d.pop("id"))

        name = d.pop("name")

        mode = Mode(d.pop("mode"))

        livemode = d.pop("livemode")

        scopes = []
        _scopes = d.pop("scopes")
        for scopes_item_data in _scopes:
            scopes_item = ApiKeyScope(scopes_item_data)

            scopes.append(scopes_item)

        last4 = d.pop("last4")

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        secret = d.pop("secret")

        created_key_out = cls(
            id=id,
            name=name,
            mode=mode,
            livemode=livemode,
            scopes=scopes,
            last4=last4,
            created_at=created_at,
            secret=secret,
        )

        created_key_out.additional_properties = d
        return created_key_out

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
