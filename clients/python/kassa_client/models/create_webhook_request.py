from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

T = TypeVar("T", bound="CreateWebhookRequest")


@_attrs_define
class CreateWebhookRequest:
    """
    Attributes:
        url (str): https (http outside production); public addresses only
        events (list[str]): Event types to send, or ["*"] for all: payment.created, payment.processing,
            payment.completed, payment.failed, payment.canceled, payment.partially_refunded, payment.refunded,
            refund.created
    """

    url: str
    events: list[str]

    def to_dict(self) -> dict[str, Any]:
        url = self.url

        events = self.events

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "url": url,
                "events": events,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        url = d.pop("url")

        events = cast(list[str], d.pop("events"))

        create_webhook_request = cls(
            url=url,
            events=events,
        )

        return create_webhook_request
