from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

from ..models.api_key_scope import ApiKeyScope
from ..models.mode import Mode
from ..types import UNSET, Unset

T = TypeVar("T", bound="CreateKeyRequest")


@_attrs_define
class CreateKeyRequest:
    """
    Attributes:
        name (str):
        mode (Mode):
        scopes (list[ApiKeyScope] | None | Unset): What the key may do: `read` (every GET), `payments` (create, process,
            capture, cancel), `refunds`, `webhooks` (endpoints and event redelivery), `checkout`. Omit for all of them.
    """

    name: str
    mode: Mode
    scopes: list[ApiKeyScope] | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        name = self.name

        mode = self.mode.value

        scopes: list[str] | None | Unset
        if isinstance(self.scopes, Unset):
            scopes = UNSET
        elif isinstance(self.scopes, list):
            scopes = []
            for scopes_type_0_item_data in self.scopes:
                scopes_type_0_item = scopes_type_0_item_data.value
                scopes.append(scopes_type_0_item)

        else:
            scopes = self.scopes

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "name": name,
                "mode": mode,
            }
        )
        if scopes is not UNSET:
            field_dict["scopes"] = scopes

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        name = d.pop("name")

        mode = Mode(d.pop("mode"))

        def _parse_scopes(data: object) -> list[ApiKeyScope] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                scopes_type_0 = []
                _scopes_type_0 = data
                for scopes_type_0_item_data in _scopes_type_0:
                    scopes_type_0_item = ApiKeyScope(scopes_type_0_item_data)

                    scopes_type_0.append(scopes_type_0_item)

                return scopes_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[ApiKeyScope] | None | Unset, data)

        scopes = _parse_scopes(d.pop("scopes", UNSET))

        create_key_request = cls(
            name=name,
            mode=mode,
            scopes=scopes,
        )

        return create_key_request
