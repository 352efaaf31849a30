from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..models.wallet_name import WalletName

T = TypeVar("T", bound="WalletDetailsIn")


@_attrs_define
class WalletDetailsIn:
    """
    Attributes:
        wallet (WalletName):
        token (str):
    """

    wallet: WalletName
    token: str

    def to_dict(self) -> dict[str, Any]:
        wallet = self.wallet.value

        token = self.token

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "wallet": wallet,
                "token": token,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        wallet = WalletName(d.pop("wallet"))

        token = d.pop("token")

        wallet_details_in = cls(
            wallet=wallet,
            token=token,
        )

        return wallet_details_in
