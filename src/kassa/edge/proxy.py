"""Which client sent a request, and whether it came over HTTPS, when reverse proxies stand in
front of kassa. Proxy headers are believed only from the peers in `KASSA_TRUSTED_PROXIES`; the
server's own proxy-header handling is off, so loopback is not trusted by default either."""

from __future__ import annotations

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


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


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
    X-Forwarded-For; a client cannot choose its own key by forging the header."""
    peer = _peer(scope)
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    for hop in reversed(_header_values(scope, b"x-forwarded-for")):
        if not _is_trusted(hop, trusted):
            return hop
    return peer


def is_https(scope: Scope, trusted: Sequence[Network]) -> bool:
    """Served over TLS by kassa itself, or by a trusted proxy that says so in the right-most
    `X-Forwarded-Proto` (the value the nearest proxy wrote)."""
    if scope.get("scheme") == "https":
        return True
    if not trusted or not _is_trusted(_peer(scope), trusted):
        return False
    protos = _header_values(scope, b"x-forwarded-proto")
    return bool(protos) and protos[-1].lower() == "https"
