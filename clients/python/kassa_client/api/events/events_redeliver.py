from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.mode import Mode
from ...models.problem import Problem
from ...models.redelivery_out import RedeliveryOut
from ...types import UNSET, Response, Unset


def _get_kwargs(
    event_id: str,
    *,
    kassa_mode: Mode | Unset = UNSET,
    x_request_id: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(kassa_mode, Unset):
        headers["Kassa-Mode"] = str(kassa_mode)

    if not isinstance(x_request_id, Unset):
        headers["X-Request-ID"] = x_request_id

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/events/{event_id}/redeliver".format(
            event_id=quote(str(event_id), safe=""),
        ),
    }

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Problem | RedeliveryOut | None:
    if response.status_code == 202:
        response_202 = RedeliveryOut.from_dict(response.json())

        return response_202

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = Problem.from_dict(response.json())

        return response_403

    if response.status_code == 404:
        response_404 = Problem.from_dict(response.json())

        return response_404

    if response.status_code == 413:
        response_413 = Problem.from_dict(response.json())

        return response_413

    if response.status_code == 422:
        response_422 = Problem.from_dict(response.json())

        return response_422

    if response.status_code == 429:
        response_429 = Problem.from_dict(response.json())

        return response_429

    if response.status_code == 431:
        response_431 = Problem.from_dict(response.json())

        return response_431

    if response.status_code == 500:
        response_500 = Problem.from_dict(response.json())

        return response_500

    if response.status_code == 503:
        response_503 = Problem.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[Problem | RedeliveryOut]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    event_id: str,
    *,
    client: AuthenticatedClient,
    kassa_mode: Mode | Unset = UNSET,
    x_request_id: str | Unset = UNSET,
) -> Response[Problem | RedeliveryOut]:
    """Redeliver Event

     Send the event again, now, to every enabled webhook endpoint subscribed to it (a new
    attempt even if it was delivered before). Delivery happens in `kassa worker`.

    Args:
        event_id (str):
        kassa_mode (Mode | Unset):
        x_request_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | RedeliveryOut]
    """

    kwargs = _get_kwargs(
        event_id=event_id,
        kassa_mode=kassa_mode,
        x_request_id=x_request_id,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    event_id: str,
    *,
    client: AuthenticatedClient,
    kassa_mode: Mode | Unset = UNSET,
    x_request_id: str | Unset = UNSET,
) -> Problem | RedeliveryOut | None:
    """Redeliver Event

     Send the event again, now, to every enabled webhook endpoint subscribed to it (a new
    attempt even if it was delivered before). Delivery happens in `kassa worker`.

    Args:
        event_id (str):
        kassa_mode (Mode | Unset):
        x_request_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | RedeliveryOut
    """

    return sync_detailed(
        event_id=event_id,
        client=client,
        kassa_mode=kassa_mode,
        x_request_id=x_request_id,
    ).parsed


async def asyncio_detailed(
    event_id: str,
    *,
    client: AuthenticatedClient,
    kassa_mode: Mode | Unset = UNSET,
    x_request_id: str | Unset = UNSET,
) -> Response[Problem | RedeliveryOut]:
    """Redeliver Event

     Send the event again, now, to every enabled webhook endpoint subscribed to it (a new
    attempt even if it was delivered before). Delivery happens in `kassa worker`.

    Args:
        event_id (str):
        kassa_mode (Mode | Unset):
        x_request_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | RedeliveryOut]
    """

    kwargs = _get_kwargs(
        event_id=event_id,
        kassa_mode=kassa_mode,
        x_request_id=x_request_id,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    event_id: str,
    *,
    client: AuthenticatedClient,
    kassa_mode: Mode | Unset = UNSET,
    x_request_id: str | Unset = UNSET,
) -> Problem | RedeliveryOut | None:
    """Redeliver Event

     Send the event again, now, to every enabled webhook endpoint subscribed to it (a new
    attempt even if it was delivered before). Delivery happens in `kassa worker`.

    Args:
        event_id (str):
        kassa_mode (Mode | Unset):
        x_request_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | RedeliveryOut
    """

    return (
        await asyncio_detailed(
            event_id=event_id,
            client=client,
            kassa_mode=kassa_mode,
            x_request_id=x_request_id,
        )
    ).parsed
