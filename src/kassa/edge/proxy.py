"""Which client sent a request, and whether it came over HTTPS, when reverse proxies stand in
front of kassa. Proxy headers are believed only from the peers in `KASSA_TRUSTED_PROXIES`; the
server's own proxy-header handling is off, so loopback is not trusted by default either."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(raw: str) -> tuple[Network, ...]:
    """Comma-separated IPs or CIDR networks; ValueError names the first bad one."""
    networks: list[Network] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or CIDR network") from None
    return tuple(networks)


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# IPv6 clients are counted per /64: one subscriber usually holds a whole /64, so counting
# per address would hand each of them 2**64 buckets.
IPV6_CLIENT_PREFIX = 64


# Every request parses its peer's address (and a proxy's hops) twice; clients repeat, so the
# last few thousand spellings are remembered (a bounded cache: a flood of new ones only
# evicts).
_REMEMBERED = 4096


@functools.lru_cache(maxsize=_REMEMBERED)
def parse_address(text: str) -> Address | None:
    """An address written as a proxy may write it — `2001:DB8::1`, `[2001:db8::1]:443`,
    `192.0.2.1:8080`, an IPv4-mapped IPv6 — or None when it is not one (`unknown`, garbage)."""
    text = text.strip()
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    text = text.split("%", 1)[0]  # a zone index names an interface, not another host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=_REMEMBERED)
def client_key(address: str) -> str:
    """The rate-limit key of a client address: the canonical IPv4 address, the /64 of an
    IPv6 address (every spelling of one address, and every address of one /64, share it);
    text that is no address is kept as it is (the peer of a non-TCP transport)."""
    parsed = parse_address(address)
    if parsed is None:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False))
    return str(parsed)


@functools.lru_cache(maxsize=_REMEMBERED)
def _canonical(text: str) -> str:
    """`text` as its address's canonical spelling; as it is when it is no address."""
    parsed = parse_address(text)
    return str(parsed) if parsed is not None else text


def _is_trusted(address: Address | None, trusted: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in trusted)


def _peer(scope: Scope) -> str:
    return str((scope.get("client") or ("unknown", 0))[0])


def _header_values(scope: Scope, name: bytes) -> list[str]:
    """Every comma-separated value of every `name` header, in order."""
    values: list[str] = []
    for key, value in scope.get("headers", ()):
        if key == name:
            values.extend(v.strip() for v in value.decode("latin-1").split(","))
    return values


def client_ip(scope: Scope, trusted: Sequence[Network]) -> str:
    """The peer, or — when the peer is a trusted proxy — the right-most untrusted hop of
    X-Forwarded-For; a client cannot choose its own key by forging the header. Hops that
    are not addresses (`unknown`, garbage) are skipped; the address is returned in its
    canonical form (`2001:DB8:0::1` is `2001:db8::1`)."""
    peer = _peer(scope)
    canonical_peer = _canonical(peer)
    if not trusted or not _is_trusted(parse_address(peer), trusted):
        return canonical_peer
    for hop in reversed(_header_values(scope, b"x-forwarded-for")):
        address = parse_address(hop)
        if address is None:
            continue
        if not _is_trusted(address, trusted):
            return str(address)
    return canonical_peer


def is_https(scope: Scope, trusted: Sequence[Network]) -> bool:
    """Served over TLS by kassa itself, or by a trusted proxy that says so in the right-most
    `X-Forwarded-Proto` (the value the nearest proxy wrote)."""
    if scope.get("scheme") == "https":
        return True
    if not trusted or not _is_trusted(parse_address(_peer(scope)), trusted):
        return False
    protos = _header_values(scope, b"x-forwarded-proto")
    return bool(protos) and protos[-1].lower() == "https"
