"""HTTPS through a real nginx: the app over TLS with a certificate the client verifies, plain
HTTP reduced to the health check, the ACME challenge and a redirect, WebSocket over wss,
TLS 1.2 and 1.3 only, HTTP/2 by ALPN, and sessions resumed from nginx's cache.

Each runs against both nginx programs (Debian's 1.22 and a current one in a container), each
with the `http2` syntax of its release; tests/proxy/test_tls_grade.py has a TLS scanner grade
the same config."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import ssl
import subprocess
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from components.config import HstsSettings, NginxSettings
from components.nginx_conf import NginxRuntime, Upstreams, render_nginx_conf
from tests.proxy import harness, tls_pki
from tests.proxy.harness import DEFAULT_PREFIXES
from tests.support.ci import unavailable

HSTS = HstsSettings(max_age_s=31_536_000, include_subdomains=True)
HSTS_VALUE = "max-age=31536000; includeSubDomains"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "SAMEORIGIN",
    "referrer-policy": "strict-origin-when-cross-origin",
}
COCKPIT = "/ws/dev-cockpit"
OLD_VERSIONS = [
    pytest.param(ssl.TLSVersion.TLSv1, id="TLSv1.0"),
    pytest.param(ssl.TLSVersion.TLSv1_1, id="TLSv1.1"),
]
CURRENT_VERSIONS = [
    pytest.param(ssl.TLSVersion.TLSv1_2, id="TLSv1.2"),
    pytest.param(ssl.TLSVersion.TLSv1_3, id="TLSv1.3"),
]


@pytest.fixture(scope="module")
def https_proxy(
    nginx: harness.NginxRunner, loopback_upstreams: Upstreams, pki: tls_pki.Pki
) -> Iterator[harness.Nginx]:
    tls = harness.TlsFiles(pki.chain_pem, pki.key_pem, hsts=HSTS)
    with harness.run_nginx(
        NginxSettings(), DEFAULT_PREFIXES, loopback_upstreams, runner=nginx, tls=tls
    ) as running:
        yield running


def client_context(ca: Path, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """Verifies nginx with the test CA; pinned to one protocol `version` if given, with every
    cipher and protocol the client's OpenSSL knows allowed, so a refusal is the server's."""
    context = ssl.create_default_context(cafile=str(ca))
    if version is not None:
        pin_version(context, version)
    return context


def pin_version(context: ssl.SSLContext, version: ssl.TLSVersion) -> None:
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0 and 1.1; offering them is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = version
        context.maximum_version = version
    context.set_ciphers("ALL:@SECLEVEL=0")


def handshake(
    port: int, context: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return context.wrap_socket(raw, server_hostname=tls_pki.LEAF_NAME, session=session)
    except BaseException:
        raw.close()
        raise


@pytest.mark.parametrize("path", ["/", "/api/whoami", "/healthz", "/_next/static/chunk.js"])
def test_https_serves_the_app_with_hsts_on_every_response(
    https_proxy: harness.Nginx, test_ca: Path, path: str
) -> None:
    with httpx.Client(verify=client_context(test_ca)) as client:
        response = client.get(https_proxy.https_url(path))
    assert response.status_code == 200
    assert response.headers["strict-transport-security"] == HSTS_VALUE
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


def test_the_backend_learns_the_client_used_https(
    https_proxy: harness.Nginx, test_ca: Path
) -> None:
    with httpx.Client(verify=client_context(test_ca)) as client:
        seen = client.get(https_proxy.https_url("/api/whoami")).json()
    assert seen["scheme"] == "https", "Uvicorn builds URLs with the scheme nginx forwards"
    assert seen["headers"]["x-forwarded-proto"] == "https"
    assert seen["headers"]["host"] == f"localhost:{https_proxy.https_port}"


def test_plain_http_sends_no_hsts(https_proxy: harness.Nginx) -> None:
    for path in ("/healthz", "/"):
        response = httpx.get(https_proxy.url(path))
        assert "strict-transport-security" not in response.headers, path


@pytest.mark.parametrize(
    "path", ["/", "/dashboard/42?tab=runs&q=a%20b", "/api/whoami?x=1", COCKPIT, "/_next/x.js"]
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_plain_http_redirects_to_the_public_https_port(
    https_proxy: harness.Nginx, path: str, method: str
) -> None:
    response = httpx.request(
        method, https_proxy.url(path), headers={"Host": "astats.example.test:8080"}
    )
    assert response.status_code == 308, "308 keeps the method and the body"
    expected = f"https://astats.example.test:{https_proxy.https_port}{path}"
    assert response.headers["location"] == expected
    assert "x-served-by" not in response.headers, "nothing was proxied over plain HTTP"


def test_a_browser_following_the_redirect_lands_on_the_app_over_https(
    https_proxy: harness.Nginx, test_ca: Path
) -> None:
    with httpx.Client(verify=client_context(test_ca), follow_redirects=True) as client:
        response = client.get(f"http://localhost:{https_proxy.port}/api/whoami?from=http")
    assert [r.status_code for r in response.history] == [308]
    assert str(response.url) == https_proxy.https_url("/api/whoami?from=http")
    assert response.json()["scheme"] == "https"


def test_the_health_check_still_answers_over_plain_http(https_proxy: harness.Nginx) -> None:
    response = httpx.get(https_proxy.url("/healthz"))
    assert response.status_code == 200
    assert response.text == "ok\n"


def test_acme_challenges_are_served_over_plain_http(https_proxy: harness.Nginx) -> None:
    challenges = https_proxy.acme_webroot / ".well-known" / "acme-challenge"
    token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
    (challenges / token).write_text(f"{token}.thumbprint")
    (challenges / token).chmod(0o644)
    response = httpx.get(https_proxy.url(f"/.well-known/acme-challenge/{token}"))
    assert response.status_code == 200
    assert response.text == f"{token}.thumbprint"
    assert response.headers["content-type"] == "text/plain"
    missing = httpx.get(https_proxy.url("/.well-known/acme-challenge/unknown-token"))
    assert missing.status_code == 404, "an unknown token is not redirected to the app"


def test_websocket_messages_travel_over_wss(https_proxy: harness.Nginx, test_ca: Path) -> None:
    with connect(
        https_proxy.wss_url(COCKPIT),
        ssl=client_context(test_ca),
        ping_interval=None,
        open_timeout=5,
        close_timeout=1,
    ) as websocket:
        assert websocket.response is not None
        assert websocket.response.status_code == 101
        for message in ("hello over tls", "x" * 100_000):
            websocket.send(message)
            assert websocket.recv(timeout=5) == message


@pytest.mark.parametrize("version", OLD_VERSIONS)
def test_tls_before_1_2_is_refused_by_the_server(
    https_proxy: harness.Nginx, test_ca: Path, version: ssl.TLSVersion
) -> None:
    with pytest.raises(ssl.SSLError) as refused:
        handshake(https_proxy.https_port, client_context(test_ca, version)).close()
    # The server's alert, not the client giving up before it sent a hello.
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value


@pytest.mark.parametrize("version", CURRENT_VERSIONS)
def test_tls_1_2_and_1_3_are_accepted(
    https_proxy: harness.Nginx, test_ca: Path, version: ssl.TLSVersion
) -> None:
    with handshake(https_proxy.https_port, client_context(test_ca, version)) as tls:
        assert tls.version() == version.name.replace("_", ".")
        cipher, _, _ = tls.cipher()  # type: ignore[misc]
    if version is ssl.TLSVersion.TLSv1_2:
        assert cipher in harness.MOZILLA_TLS12_SUITES, f"{cipher} is not one of Mozilla's"
    else:
        assert cipher in harness.MOZILLA_TLS13_SUITES


def test_the_version_probe_detects_a_server_that_accepts_tls_1_1(
    pki: tls_pki.Pki, test_ca: Path, tmp_path: Path
) -> None:
    """The refusal test's probe connects with TLS 1.1 where a server allows it."""
    (tmp_path / "chain.pem").write_bytes(pki.chain_pem)
    (tmp_path / "key.pem").write_bytes(pki.key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    pin_version(server_context, ssl.TLSVersion.TLSv1_1)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept_one() -> None:
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

        server = threading.Thread(target=accept_one, daemon=True)
        server.start()
        with handshake(port, client_context(test_ca, ssl.TLSVersion.TLSv1_1)) as tls:
            assert tls.version() == "TLSv1.1"
        server.join(timeout=5)


def test_http2_is_negotiated_by_alpn(https_proxy: harness.Nginx, test_ca: Path) -> None:
    context = client_context(test_ca)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with handshake(https_proxy.https_port, context) as tls:
        assert tls.selected_alpn_protocol() == "h2"
    only_http1 = client_context(test_ca)
    only_http1.set_alpn_protocols(["http/1.1"])
    with handshake(https_proxy.https_port, only_http1) as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"


def test_a_request_over_http2_reaches_the_backend(
    https_proxy: harness.Nginx, test_ca: Path
) -> None:
    curl = shutil.which("curl")
    if curl is None:
        unavailable("curl is not installed")
    result = subprocess.run(
        [
            curl,
            "--http2",
            "--silent",
            "--show-error",
            "--cacert",
            str(test_ca),
            "--write-out",
            "\n%{http_version} %{response_code}",
            https_proxy.https_url("/api/whoami"),
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "2 200"
    assert '"x-forwarded-proto":"https"' in body
    # HTTP/2 has :authority, not Host; the backend still sees the client's host and port.
    assert f'"host":"localhost:{https_proxy.https_port}"' in body
    assert f'"x-forwarded-host":"localhost:{https_proxy.https_port}"' in body


def test_a_post_quantum_client_gets_a_hybrid_key_exchange_where_openssl_has_one(
    https_proxy: harness.Nginx, container_nginx: harness.ContainerNginx, test_ca: Path
) -> None:
    """No ssl_ecdh_curve: OpenSSL's own groups, post-quantum X25519MLKEM768 first from 3.5
    (Mozilla's first choice too), X25519 before; curl from the current image offers both."""
    expected = "X25519MLKEM768" if https_proxy.runner.openssl >= (3, 5) else "X25519"
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "host",
            "--volume",
            f"{test_ca}:/test-ca.pem:ro",
            container_nginx.image,
            "curl",
            "--verbose",
            "--silent",
            "--output",
            "/dev/null",
            "--cacert",
            "/test-ca.pem",
            https_proxy.https_url("/healthz"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    connection = next(line for line in result.stderr.splitlines() if "SSL connection" in line)
    assert f"/ {expected.lower()} /" in connection.lower(), connection


@pytest.mark.parametrize("version", CURRENT_VERSIONS)
def test_sessions_resume_from_the_cache_without_tickets(
    https_proxy: harness.Nginx, test_ca: Path, version: ssl.TLSVersion
) -> None:
    context = client_context(test_ca, version)
    request = f"GET /healthz HTTP/1.1\r\nHost: localhost:{https_proxy.https_port}\r\n\r\n"
    with handshake(https_proxy.https_port, context) as first:
        # TLS 1.3 hands out its session after the handshake: read a response first.
        first.sendall(request.encode())
        assert b"200 OK" in first.recv(4096)
        session = first.session
        assert session is not None
    assert not session.has_ticket or version is ssl.TLSVersion.TLSv1_3, "tickets are off"
    with handshake(https_proxy.https_port, context, session=session) as second:
        assert second.session_reused


def _render_with_files(runtime: NginxRuntime, pki: tls_pki.Pki, *, legacy_http2: bool) -> str:
    """A TLS config for `nginx -t`, its certificate files in the throwaway prefix."""
    root = Path(runtime.temp_dir)
    tls = harness.write_tls_files(root, harness.TlsFiles(pki.chain_pem, pki.key_pem), 8443)
    return render_nginx_conf(
        NginxSettings(),
        DEFAULT_PREFIXES,
        Upstreams("127.0.0.1:8000", "127.0.0.1:3000"),
        listen_port=8080,
        runtime=dataclasses.replace(runtime, legacy_http2=legacy_http2),
        tls=tls,
    )


def test_each_nginx_takes_its_own_http2_syntax_without_a_warning(
    nginx: harness.NginxRunner, pki: tls_pki.Pki
) -> None:
    result = harness.nginx_check(
        lambda runtime: _render_with_files(runtime, pki, legacy_http2=runtime.legacy_http2),
        nginx,
    )
    assert result.returncode == 0, f"{nginx.label}: {result.stderr}"
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr, result.stderr


def test_the_other_http2_syntax_would_fail_or_warn(
    nginx: harness.NginxRunner, pki: tls_pki.Pki
) -> None:
    """Why the syntax follows the release: 1.22 does not know `http2 on`, and later
    releases warn that the `listen` parameter is deprecated."""
    result = harness.nginx_check(
        lambda runtime: _render_with_files(runtime, pki, legacy_http2=not runtime.legacy_http2),
        nginx,
    )
    if nginx.legacy_http2:
        assert result.returncode != 0
        assert 'unknown directive "http2"' in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert '"listen ... http2" directive is deprecated' in result.stderr
