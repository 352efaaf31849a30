import datetime
from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.mode import Mode
from ...models.payment_list import PaymentList
from ...models.payment_method import PaymentMethod
from ...models.payment_status import PaymentStatus
from ...models.payments_list_metadata import PaymentsListMetadata
from ...models.problem import Problem
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    limit: int | Unset = 20,
    cursor: None | str | Unset = UNSET,
    status: None | PaymentStatus | Unset = UNSET,
    currency: None | str | Unset = UNSET,
    payment_method: None | PaymentMethod | Unset = UNSET,
    created_gte: datetime.datetime | None | Unset = UNSET,
    created_lt: datetime.datetime | None | Unset = UNSET,
    amount_gte: int | None | Unset = UNSET,
    amount_lte: int | None | Unset = UNSET,
    metadata: PaymentsListMetadata | Unset = UNSET,
    kassa_mode: Mode | Unset = UNSET,
    x_request_id: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(kassa_mode, Unset):
        headers["Kassa-Mode"] = str(kassa_mode)

    if not isinstance(x_request_id, Unset):
        headers["X-Request-ID"] = x_request_id

    params: dict[str, Any] = {}

    params["limit"] = limit

    json_cursor: None | str | Unset
    if isinstance(cursor, Unset):
        json_cursor = UNSET
    else:
        json_cursor = cursor
    params["cursor"] = json_cursor

    json_status: None | str | Unset
    if isinstance(status, Unset):
        json_status = UNSET
    elif isinstance(status, PaymentStatus):
        json_status = status.value
    else:
        json_status = status
    params["status"] = json_status

    json_currency: None | str | Unset
    if isinstance(currency, Unset):
        json_currency = UNSET
    else:
        json_currency = currency
    params["currency"] = json_currency

    json_payment_method: None | str | Unset
    if isinstance(payment_method, Unset):
        json_payment_method = UNSET
    elif isinstance(payment_method, PaymentMethod):
        json_payment_method = payment_method.value
    else:
        json_payment_method = payment_method
    params["payment_method"] = json_payment_method

    json_created_gte: None | str | Unset
    if isinstance(created_gte, Unset):
        json_created_gte = UNSET
    elif isinstance(created_gte, datetime.datetime):
        json_created_gte = created_gte.isoformat()
    else:
        json_created_gte = created_gte
    params["created_gte"] = json_created_gte

    json_created_lt: None | str | Unset
    if isinstance(created_lt, Unset):
        json_created_lt = UNSET
    elif isinstance(created_lt, datetime.datetime):
        json_created_lt = created_lt.isoformat()
    else:
        json_created_lt = created_lt
    params["created_lt"] = json_created_lt

    json_amount_gte: int | None | Unset
    if isinstance(amount_gte, Unset):
        json_amount_gte = UNSET
    else:
        json_amount_gte = amount_gte
    params["amount_gte"] = json_amount_gte

    json_amount_lte: int | None | Unset
    if isinstance(amount_lte, Unset):
        json_amount_lte = UNSET
    else:
        json_amount_lte = amount_lte
    params["amount_lte"] = json_amount_lte

    json_metadata: dict[str, Any] | Unset = UNSET
    if not isinstance(metadata, Unset):
        json_metadata = metadata.to_dict()
    if not isinstance(json_metadata, Unset):
        params.update(json_metadata)

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/payments",
        "params": params,
    }

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> PaymentList | Problem | None:
    if response.status_code == 200:
        response_200 = PaymentList.from_dict(response.json())

        return response_200

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = Problem.from_dict(response.json())

        return response_403

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
) -> Response[PaymentList | Problem]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = 20,
    cursor: None | str | Unset = UNSET,
    status: None | PaymentStatus | Unset = UNSET,
    currency: None | str | Unset = UNSET,
    payment_method: None | PaymentMethod | Unset = UNSET,
    created_gte: datetime.datetime | None | Unset = UNSET,
    created_lt: datetime.datetime | None | Unset = UNSET,
    amount_gte: int | None | Unset = UNSET,
    amount_lte: int | None | Unset = UNSET,
    metadata: PaymentsListMetadata | Unset = UNSET,
    kassa_mode: Mode | Unset = UNSET,
    x_request_id: str | Unset = UNSET,
) -> Response[PaymentList | Problem]:
    """List Payments

     The caller's payments (of the mode it acts in), newest first, with cursor pagination;
    every filter given must hold.

    Args:
        limit (int | Unset):  Default: 20.
        cursor (None | str | Unset):
        status (None | PaymentStatus | Unset):
        currency (None | str | Unset): ISO 4217, any case
        payment_method (None | PaymentMethod | Unset):
        created_gte (datetime.datetime | None | Unset): Created at or after
        created_lt (datetime.datetime | None | Unset): Created before
        amount_gte (int | None | Unset): Minor units, at least
        amount_lte (int | None | Unset): Minor units, at most
        metadata (PaymentsListMetadata | Unset):
        kassa_mode (Mode | Unset):
        x_request_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[PaymentList | Problem]
    """

    kwargs = _get_kwargs(
        limit=limit,
        cursor=cursor,
        status=status,
        currency=currency,
        payment_method=payment_method,
        created_gte=created_gte,
        created_lt=created_lt,
        amount_gte=amount_gte,
        amount_lte=amount_lte,
        metadata=metadata,
        kassa_mode=kassa_mode,
        x_request_id=x_request_id,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = 20,
    cursor: None | str | Unset = UNSET,
    status: None | PaymentStatus | Unset = UNSET,
    currency: None | str | Unset = UNSET,
    payment_method: None | PaymentMethod | Unset = UNSET,
    created_gte: datetime.datetime | None | Unset = UNSET,
    created_lt: datetime.datetime | None | Unset = UNSET,
    amount_gte: int | None | Unset = UNSET,
    amount_lte: int | None | Unset = UNSET,
    metadata: PaymentsListMetadata | Unset = UNSET,
    kassa_mode: Mode | Unset = UNSET,
    x_request_id: str | Unset = UNSET,
) -> PaymentList | Problem | None:
    """List Payments

     The caller's payments (of the mode it acts in), newest first, with cursor pagination;
    every filter given must hold.

    Args:
        limit (int | Unset):  Default: 20.
        cursor (None | str | Unset):
        status (None | PaymentStatus | Unset):
        currency (None | str | Unset): ISO 4217, any case
        payment_method (None | PaymentMethod | Unset):
        created_gte (datetime.datetime | None | Unset): Created at or after
        created_lt (datetime.datetime | None | Unset): Created before
        amount_gte (int | None | Unset): Minor units, at least
        amount_lte (int | None | Unset): Minor units, at most
        metadata (PaymentsListMetadata | Unset):
        kassa_mode (Mode | Unset):
        x_request_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        PaymentList | Problem
    """

    return sync_detailed(
        client=client,
        limit=limit,
        cursor=cursor,
        status=status,
        currency=currency,
        payment_method=payment_method,
        created_gte=created_gte,
        created_lt=created_lt,
        amount_gte=amount_gte,
        amount_lte=amount_lte,
        metadata=metadata,
        kassa_mode=kassa_mode,
        x_request_id=x_request_id,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = 20,
    cursor: None | str | Unset = UNSET,
    status: None | PaymentStatus | Unset = UNSET,
    currency: None | str | Unset = UNSET,
    payment_method: None | PaymentMethod | Unset = UNSET,
    created_gte: datetime.datetime | None | Unset = UNSET,
    created_lt: datetime.datetime | None | Unset = UNSET,
    amount_gte: int | None | Unset = UNSET,
    amount_lte: int | None | Unset = UNSET,
    metadata: PaymentsListMetadata | Unset = UNSET,
    kassa_mode: Mode | Unset = UNSET,
    x_request_id: str | Unset = UNSET,
) -> Response[PaymentList | Problem]:
    """List Payments

     The caller's payments (of the mode it acts in), newest first, with cursor pagination;
    every filter given must hold.

    Args:
        limit (int | Unset):  Default: 20.
        cursor (None | str | Unset):
        status (None | PaymentStatus | Unset):
        currency (None | str | Unset): ISO 4217, any case
        payment_method (None | PaymentMethod | Unset):
        created_gte (datetime.datetime | None | Unset): Created at or after
        created_lt (datetime.datetime | None | Unset): Created before
        amount_gte (int | None | Unset): Minor units, at least
        amount_lte (int | None | Unset): Minor units, at most
        metadata (PaymentsListMetadata | Unset):
        kassa_mode (Mode | Unset):
        x_request_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[PaymentList | Problem]
    """

    kwargs = _get_kwargs(
        limit=limit,
        cursor=cursor,
        status=status,
        currency=currency,
        payment_method=payment_method,
        created_gte=created_gte,
        created_lt=created_lt,
        amount_gte=amount_gte,
        amount_lte=amount_lte,
        metadata=metadata,
        kassa_mode=kassa_mode,
        x_request_id=x_request_id,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = 20,
    cursor: None | str | Unset = UNSET,
    status: None | PaymentStatus | Unset = UNSET,
    currency: None | str | Unset = UNSET,
    payment_method: None | PaymentMethod | Unset = UNSET,
    created_gte: datetime.datetime | None | Unset = UNSET,
    created_lt: datetime.datetime | None | Unset = UNSET,
    amount_gte: int | None | Unset = UNSET,
    amount_lte: int | None | Unset = UNSET,
    metadata: PaymentsListMetadata | Unset = UNSET,
    kassa_mode: Mode | Unset = UNSET,
    x_request_id: str | Unset = UNSET,
) -> PaymentList | Problem | None:
    """List Payments

     The caller's payments (of the mode it acts in), newest first, with cursor pagination;
    every filter given must hold.

    Args:
        limit (int | Unset):  Default: 20.
        cursor (None | str | Unset):
        status (None | PaymentStatus | Unset):
        currency (None | str | Unset): ISO 4217, any case
        payment_method (None | PaymentMethod | Unset):
        created_gte (datetime.datetime | None | Unset): Created at or after
        created_lt (datetime.datetime | None | Unset): Created before
        amount_gte (int | None | Unset): Minor units, at least
        amount_lte (int | None | Unset): Minor units, at most
        metadata (PaymentsListMetadata | Unset):
        kassa_mode (Mode | Unset):
        x_request_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        PaymentList | Problem
    """

    return (
        await asyncio_detailed(
            client=client,
            limit=limit,
            cursor=cursor,
            status=status,
            currency=currency,
            payment_method=payment_method,
            created_gte=created_gte,
            created_lt=created_lt,
            amount_gte=amount_gte,
            amount_lte=amount_lte,
            metadata=metadata,
            kassa_mode=kassa_mode,
            x_request_id=x_request_id,
        )
    ).parsed
