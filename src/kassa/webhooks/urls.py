"""Where a webhook may be sent: URL rules and the SSRF guard.

A URL is checked when the endpoint is created and again before every delivery, after DNS
resolution: if ANY address the host resolves to is loopback, private, link-local, shared
(CGNAT), reserved or otherwise not globally routable, the URL is refused — unless
`KASSA_WEBHOOK_ALLOW_PRIVATE=true` (tests, local development). Cloud metadata addresses,
the unspecified address and multicast are refused even then. IPv4 addresses embedded in IPv6
(mapped, 6to4, Teredo, NAT64) are judged as the IPv4 address they reach.

The delivery connects to one of the addresses that was checked (with the URL's host name in
the Host header and TLS SNI), so a DNS answer that changes between check and connect
(rebinding) cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""(host, port) → the addresses it resolves to, as text; raises OSError when it does not."""

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_SECONDS = 5.0
DEFAULT_PORTS = {"http": 80, "https": 443}
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server (a public address)
    )
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class UrlRejected(ValueError):
    """The URL is not one kassa sends webhooks to (syntax, scheme); the message is safe."""


class AddressRefused(Exception):
    """The host resolves to an address webhooks are never sent to; the message is safe."""


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    scheme: str
    host: str  # lower-case ASCII host name, or an IP address without brackets
    port: int
    target: str  # path and query, "/" at least
    host_header: str

    @property
    def is_ip_literal(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def url_for(self, address: IPAddress) -> str:
        """The URL with its host replaced by `address`: what is actually connected to."""
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{host}:{self.port}{self.target}"


def loggable_url(raw: str) -> str:
    """The URL as a log line may show it: scheme, host, port and path. A receiver's query
    string often carries its token, so it is never logged (nor credentials or a fragment,
    which `parse_url` refuses anyway)."""
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        return "(not a valid URL)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path or '/'}"


def parse_url(raw: str, *, require_https: bool) -> WebhookTarget:
    if not raw or len(raw) > MAX_URL_LENGTH:
        raise UrlRejected(f"must be 1 to {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        raise UrlRejected("must not contain spaces or control characters")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise UrlRejected("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UrlRejected("must be an http or https URL")
    if require_https and scheme != "https":
        raise UrlRejected("must use https")
    if parts.username is not None or parts.password is not None:
        raise UrlRejected("must not contain credentials")
    if parts.fragment or raw.endswith("#"):
        raise UrlRejected("must not have a fragment")
    hostname = parts.hostname or ""
    if not hostname:
        raise UrlRejected("must name a host")
    if port == 0:
        raise UrlRejected("must not use port 0")
    try:
        address: IPAddress | None = ipaddress.ip_address(hostname.split("%", 1)[0])
    except ValueError:
        address = None
    if address is not None:
        if "%" in hostname:
            raise UrlRejected("must not name a network interface")
        host = str(address)
    else:
        try:
            host = hostname.encode("idna").decode("ascii").rstrip(".")
        except UnicodeError:
            raise UrlRejected("has an invalid host name") from None
        if not host or len(host) > 253:
            raise UrlRejected("has an invalid host name")
    effective_port = port or DEFAULT_PORTS[scheme]
    shown = f"[{host}]" if address is not None and address.version == 6 else host
    host_header = shown if port in (None, DEFAULT_PORTS[scheme]) else f"{shown}:{port}"
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    return WebhookTarget(scheme, host, effective_port, target, host_header)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[IPAddress]:
    embedded: list[IPAddress] = []
    if address.ipv4_mapped is not None:
        embedded.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    if address.teredo is not None:
        embedded.extend(address.teredo)
    if any(address in net for net in _NAT64):
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return embedded


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why a webhook must not go to `address`, or None when it may."""
    # The IPv4 address an IPv6 one leads to first: its reason is the one that explains.
    candidates: list[IPAddress] = []
    if isinstance(address, ipaddress.IPv6Address):
        candidates.extend(_embedded_ipv4(address))
    candidates.append(address)
    for candidate in candidates:
        if candidate in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if candidate.is_unspecified:
            return "an unspecified address"
        if candidate.is_multicast:
            return "a multicast address"
        if allow_private:
            continue
        if candidate.is_loopback:
            return "a loopback address"
        if candidate.is_link_local:
            return "a link-local address"
        if candidate.is_private:
            return "a private address"
        if candidate.is_reserved or not candidate.is_global:
            return "an address that is not publicly routable"
    return None


async def system_resolver(host: str, port: int) -> Sequence[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


async def resolve_and_check(
    target: WebhookTarget, resolver: Resolver, *, allow_private: bool
) -> list[IPAddress]:
    """Every address `target`'s host resolves to, in the resolver's order of preference;
    `AddressRefused` if it does not resolve or if any address is refused."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                raw = await resolver(target.host, target.port)
        except (OSError, TimeoutError, UnicodeError):
            raise AddressRefused(f"the host {target.host} does not resolve") from None
        addresses = []
        for text in raw:
            try:
                parsed = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError:
                continue
            if parsed not in addresses:
                addresses.append(parsed)
        if not addresses:
            raise AddressRefused(f"the host {target.host} does not resolve")
    for address in addresses:
        reason = refusal(address, allow_private=allow_private)
        if reason is not None:
            raise AddressRefused(f"the host {target.host} resolves to {reason}")
    return addresses
