"""The SSRF guard on its own: URL rules, and which addresses webhooks never go to."""

from __future__ import annotations

import ipaddress

import pytest

from kassa.webhooks.urls import (
    AddressRefused,
    UrlRejected,
    parse_url,
    refusal,
    resolve_and_check,
)
from tests.webhooks import FakeResolver


@pytest.mark.parametrize(
    "url",
    [
        "",
        "hooks.example.com/path",
        "ftp://hooks.example.com/",
        "javascript:alert(1)",
        "https://user:pass@hooks.example.com/",
        "https://hooks.example.com/#fragment",
        "https:///no-host",
        "https://hooks.example.com:99999/",
        "https://hooks.example.com:0/",
        "https://hooks example.com/",
        "https://hooks.example.com/\nX-Injected: 1",
        "https://[fe80::1%25eth0]/",
        "https://" + "a" * 2048 + ".com/",
    ],
)
def test_malformed_urls_are_rejected(url: str) -> None:
    with pytest.raises(UrlRejected):
        parse_url(url, require_https=False)


def test_production_needs_https() -> None:
    with pytest.raises(UrlRejected, match="https"):
        parse_url("http://hooks.example.com/", require_https=True)
    assert parse_url("https://hooks.example.com/", require_https=True).scheme == "https"


def test_a_url_keeps_its_path_query_host_and_port() -> None:
    target = parse_url("https://Hooks.Example.com:8443/in/bound?a=1&b=2", require_https=True)
    assert (target.host, target.port, target.target) == (
        "hooks.example.com",
        8443,
        "/in/bound?a=1&b=2",
    )
    assert target.host_header == "hooks.example.com:8443"
    assert target.url_for(ipaddress.ip_address("93.184.215.14")) == (
        "https://93.184.215.14:8443/in/bound?a=1&b=2"
    )
    v6 = parse_url("http://[2606:4700::1]/", require_https=False)
    assert v6.host_header == "[2606:4700::1]"
    assert v6.url_for(ipaddress.ip_address("2606:4700::1")) == "http://[2606:4700::1]:80/"


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.10", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("169.254.170.2", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("168.63.129.16", "metadata"),
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "not publicly routable"),
        ("192.0.2.1", "private"),
        ("240.0.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 around 10.0.0.1
    ],
)
def test_internal_addresses_are_refused(address: str, why: str) -> None:
    reason = refusal(ipaddress.ip_address(address), allow_private=False)
    assert reason is not None
    assert why in reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_private=False) is None


def test_allowing_private_networks_still_refuses_metadata_and_nonsense() -> None:
    for allowed in ("127.0.0.1", "::1", "10.0.0.1", "192.168.1.1", "169.254.1.1"):
        assert refusal(ipaddress.ip_address(allowed), allow_private=True) is None
    for refused in ("169.254.169.254", "fd00:ec2::254", "0.0.0.0", "224.0.0.1"):  # noqa: S104
        assert refusal(ipaddress.ip_address(refused), allow_private=True) is not None


async def test_one_internal_answer_among_public_ones_refuses_the_host() -> None:
    resolver = FakeResolver({"hooks.example.com": ["93.184.215.14", "10.0.0.7"]})
    target = parse_url("https://hooks.example.com/", require_https=True)
    with pytest.raises(AddressRefused, match="private"):
        await resolve_and_check(target, resolver, allow_private=False)
    resolver.answers["hooks.example.com"] = ["93.184.215.14", "2606:4700::1"]
    addresses = await resolve_and_check(target, resolver, allow_private=False)
    assert [str(a) for a in addresses] == ["93.184.215.14", "2606:4700::1"]


async def test_a_host_that_does_not_resolve_is_refused() -> None:
    target = parse_url("https://nowhere.invalid/", require_https=True)
    with pytest.raises(AddressRefused, match="does not resolve"):
        await resolve_and_check(target, FakeResolver(), allow_private=True)


async def test_the_system_resolver_sees_through_numeric_host_spellings() -> None:
    from kassa.webhooks.urls import system_resolver

    for spelling in ("2130706433", "0x7f.1", "127.1", "localhost"):
        target = parse_url(f"http://{spelling}:8080/", require_https=False)
        with pytest.raises(AddressRefused, match="loopback"):
            await resolve_and_check(target, system_resolver, allow_private=False)
