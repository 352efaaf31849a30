"""The per-IP limit's key: one bucket per client, however its address is written — IPv6 is
normalised and grouped by /64 (a subscriber's usual allocation), and X-Forwarded-For hops that
are not addresses are skipped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kassa.edge.proxy import client_ip, client_key, parse_trusted_proxies
from tests.conftest import Api
from tests.test_ratelimit import LIMITED_PATH, client_from

PROXY = "10.0.0.5"


def scope(peer: str, forwarded: str | None = None) -> dict[str, Any]:
    headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
    return {"type": "http", "client": (peer, 40000), "headers": headers}


@pytest.mark.parametrize(
    "spelling", ["2001:db8::1", "2001:db8:0:0:0:0:0:1", "2001:DB8::1", "2001:0db8::0001"]
)
def test_every_spelling_of_an_ipv6_address_has_one_key(spelling: str) -> None:
    assert client_key(spelling) == "2001:db8::/64"


def test_addresses_of_one_64_share_a_key_and_other_64s_do_not() -> None:
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")


def test_ipv4_keys_are_canonical_and_per_address() -> None:
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"  # IPv4-mapped IPv6
    assert client_key("192.0.2.1") != client_key("192.0.2.2")


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("198.51.100.7, garbage", "198.51.100.7"),
        ("198.51.100.7, unknown, _hidden", "198.51.100.7"),
        ("198.51.100.7, 999.1.1.1", "198.51.100.7"),
        ("198.51.100.7, 2001:db8::1::2", "198.51.100.7"),
        ("garbage", PROXY),  # no address at all: the proxy itself
        ("2001:DB8:0::7", "2001:db8::7"),
        ("[2001:db8::7]:4711", "2001:db8::7"),
        ("198.51.100.7:4711", "198.51.100.7"),
    ],
)
def test_x_forwarded_for_hops_that_are_not_addresses_are_skipped(
    forwarded: str, expected: str
) -> None:
    trusted = parse_trusted_proxies("10.0.0.0/8")
    assert client_ip(scope(PROXY, forwarded), trusted) == expected


async def statuses_from(api: Api, peers: list[str]) -> list[int]:
    statuses = []
    for peer in peers:
        client: httpx.AsyncClient = client_from(api, peer)
        async with client:
            statuses.append((await client.get(LIMITED_PATH)).status_code)
    return statuses


async def test_three_spellings_of_one_address_share_one_bucket(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="3/minute")
    peers = ["2001:db8::1", "2001:db8:0:0:0:0:0:1", "2001:DB8::1", "2001:db8::1"]
    assert await statuses_from(api, peers) == [401, 401, 401, 429]


async def test_two_addresses_in_one_64_share_one_bucket(api_factory: Callable[..., Any]) -> None:
    api: Api = await api_factory(rate_limit="2/minute")
    peers = ["2001:db8:a:b::1", "2001:db8:a:b::2", "2001:db8:a:b:c:d:e:f", "2001:db8:a:c::1"]
    assert await statuses_from(api, peers) == [401, 401, 429, 401]


async def test_garbage_forwarded_hops_do_not_make_buckets(api_factory: Callable[..., Any]) -> None:
    api: Api = await api_factory(rate_limit="2/minute", trusted_proxies="10.0.0.0/8")
    async with client_from(api, PROXY) as proxy:
        statuses = [
            (
                await proxy.get(LIMITED_PATH, headers={"X-Forwarded-For": f"192.0.2.9, junk-{i}"})
            ).status_code
            for i in range(3)
        ]
    assert statuses == [401, 401, 429]
