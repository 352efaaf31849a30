"""`kassa serve --tls-certfile/--tls-keyfile` over a real TLS connection, with a certificate
minted for the test by a throw-away CA (trustme)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trustme

from kassa.edge.server import tls_context
from tests.acceptance.conftest import Server

# Real server processes (two, some of them) on a possibly busy machine.
pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    return certfile, keyfile


@pytest.fixture
def tls_server(
    serve: Callable[..., Server], tls_files: tuple[Path, Path], ca: trustme.CA
) -> Server:
    return serve(tls=(*tls_files, client_context(ca)))


def client_context(ca: trustme.CA, **versions: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    for name, value in versions.items():
        setattr(context, name, value)
    return context


def https(server: Server) -> str:
    return server.base_url.replace("http://", "https://")


def handshake(server: Server, context: ssl.SSLContext) -> str:
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        version = tls.version()
        assert version is not None
        return version


def test_serves_https_with_the_given_certificate(tls_server: Server, ca: trustme.CA) -> None:
    with httpx.Client(verify=client_context(ca), timeout=10) as client:
        response = client.get(https(tls_server) + "/healthz")
    assert response.status_code == 200


def test_https_responses_carry_strict_transport_security(
    tls_server: Server, ca: trustme.CA
) -> None:
    with httpx.Client(verify=client_context(ca), timeout=10) as client:
        for path in ("/healthz", "/api/auth/profile", "/docs"):
            response = client.get(https(tls_server) + path)
            assert response.headers["strict-transport-security"].startswith("max-age="), path
            assert int(response.headers["strict-transport-security"].split("=")[1]) >= 31536000


def test_tls_1_2_and_1_3_are_accepted(tls_server: Server, ca: trustme.CA) -> None:
    v12 = client_context(
        ca, minimum_version=ssl.TLSVersion.TLSv1_2, maximum_version=ssl.TLSVersion.TLSv1_2
    )
    assert handshake(tls_server, v12) == "TLSv1.2"
    assert handshake(tls_server, client_context(ca)) == "TLSv1.3"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_1_is_refused_by_the_server(tls_server: Server, ca: trustme.CA) -> None:
    old = client_context(ca)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer what it may
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError) as refused:
        handshake(tls_server, old)
    # The server ended the handshake; the client did offer TLS 1.1 (a client that cannot
    # would fail with NO_PROTOCOLS_AVAILABLE before sending anything).
    assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value)


def test_the_tls_context_kassa_builds_refuses_anything_below_tls_1_2(
    tls_files: tuple[Path, Path],
) -> None:
    certfile, keyfile = tls_files

    def default() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.load_cert_chain(certfile, keyfile)
        return context

    context = tls_context(None, default)  # type: ignore[arg-type]
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_plain_http_to_the_tls_port_is_not_answered_in_clear(tls_server: Server) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(tls_server.base_url + "/api/auth/profile", timeout=5)


def test_plain_http_responses_carry_no_strict_transport_security(
    serve: Callable[..., Server],
) -> None:
    server = serve()
    response = httpx.get(server.base_url + "/api/auth/profile", timeout=10)
    assert "strict-transport-security" not in response.headers
