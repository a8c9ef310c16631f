"""HTTPS settings and how the stack wires them, on Pulumi's mocks: one-line errors that name the
key, the operator's pair through nginx's files volume, and ACME's volumes, placeholder and
client in their order."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.config import LETSENCRYPT_DIRECTORY, LETSENCRYPT_STAGING_DIRECTORY, ConfigError
from tests.pulumi_harness import DEV_SECRETS, SECRET_SIG, Graph, dev_config, evaluate

CONTAINER = "docker:index/container:Container"
COMMAND = "command:local:Command"
VOLUME = "docker:index/volume:Volume"
PEM_CHAIN = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
HOST = "astats.example.org"


def with_tls(tls: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {**dev_config(), "publicHost": HOST, "tls": tls, **top}


def acme(**extra: Any) -> dict[str, Any]:
    return with_tls({"mode": "acme", "acme": {"email": "ops@example.org", **extra}})


def problems(settings: dict[str, Any], secrets: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        evaluate(settings, secrets)
    return str(caught.value)


def labels(container: Any) -> dict[str, str]:
    return {item["label"]: item["value"] for item in container.inputs["labels"]}


def published(container: Any) -> set[tuple[int, int]]:
    return {(p["external"], p["internal"]) for p in container.inputs["ports"]}


def test_tls_is_off_on_dev_and_the_url_says_http() -> None:
    graph = evaluate()
    nginx = graph.containers()["nginx"]
    assert "acme" not in graph.containers()
    assert not any(k.startswith("astats.tls.") for k in labels(nginx))
    assert graph.stack_outputs["url"].startswith("http://")
    assert "listen 8443" not in graph.files(nginx)["nginx.conf"]


def test_acme_needs_a_contact_address() -> None:
    message = problems(with_tls({"mode": "acme"}))
    assert "astats:tls.mode is acme but astats:tls.acme.email is unset" in message
    assert "pulumi config set --path 'astats:tls.acme.email'" in message


def test_acme_cannot_certify_localhost() -> None:
    settings = {**acme(), "publicHost": "localhost"}
    message = problems(settings)
    assert "astats:publicHost is not a fully qualified host name" in message
    assert "astats:tls.domains[0]" in message


@pytest.mark.parametrize(
    ("domain", "why"),
    [("*.example.org", "is a wildcard"), ("10.0.0.1", "is an IP address"), ("Ex.org", "lower")],
)
def test_a_domain_acme_cannot_validate_is_refused(domain: str, why: str) -> None:
    settings = with_tls({"mode": "acme", "domains": [domain], "acme": {"email": "a@b.org"}})
    message = problems(settings)
    assert "astats:tls.domains[0]:" in message and why in message


def test_staging_and_a_directory_url_are_exclusive() -> None:
    message = problems(acme(staging=True, directoryUrl="https://ca.example.org/dir"))
    assert "astats:tls.acme.staging and astats:tls.acme.directoryUrl are both set" in message


def test_the_https_port_may_not_collide_with_nginxs() -> None:
    settings = acme()
    settings["tls"]["httpsPort"] = settings["nginx"]["httpPort"]
    assert "astats:nginx.httpPort and astats:tls.httpsPort are both" in problems(settings)


def test_preload_needs_subdomains_and_a_year() -> None:
    settings = acme()
    settings["tls"]["hsts"] = {"preload": True}
    assert "astats:tls.hsts.preload needs astats:tls.hsts.includeSubdomains" in problems(settings)


def test_files_mode_needs_both_secrets_encrypted() -> None:
    message = problems(with_tls({"mode": "files"}))
    for key in ("tlsCertificate", "tlsPrivateKey"):
        assert f"astats:{key}: missing secret" in message
        assert "because tls.mode is files" in message
    with pytest.raises(ConfigError) as caught:
        evaluate(
            with_tls({"mode": "files"}),
            {**DEV_SECRETS, "tlsCertificate": PEM_CHAIN},
            plaintext={"tlsPrivateKey": PEM_KEY},
        )
    assert "astats:tlsPrivateKey: stored in plain text" in str(caught.value)


def test_a_pair_set_for_another_mode_is_named() -> None:
    message = problems(acme(), {**DEV_SECRETS, "tlsCertificate": PEM_CHAIN})
    assert "astats:tlsCertificate: set, but tls.mode is acme, so nothing reads it" in message


def test_the_staging_switch_picks_lets_encrypts_staging_directory() -> None:
    for extra, directory in (
        ({}, LETSENCRYPT_DIRECTORY),
        ({"staging": True}, LETSENCRYPT_STAGING_DIRECTORY),
    ):
        client = evaluate(acme(**extra)).containers()["acme"]
        assert f"ACME_DIRECTORY={directory}" in client.inputs["envs"]


def test_files_mode_hands_nginx_the_pair_as_secrets() -> None:
    secrets = {**DEV_SECRETS, "tlsCertificate": PEM_CHAIN, "tlsPrivateKey": PEM_KEY}
    graph = evaluate(with_tls({"mode": "files", "httpsPort": 8443}), secrets)
    nginx = graph.containers()["nginx"]
    files = graph.files(nginx)
    assert files["tls-fullchain.pem"] == PEM_CHAIN
    assert files["tls-privkey.pem"] == PEM_KEY
    # The step's stdin carries them, encrypted in the state like every secret.
    assert SECRET_SIG in json.dumps(graph.files_step(nginx).wire["stdin"])
    conf = files["nginx.conf"]
    assert "ssl_certificate /etc/nginx/astats/tls-fullchain.pem;" in conf
    assert "acme-challenge" not in conf
    assert (8443, 8443) in published(nginx)
    assert labels(nginx)["astats.tls.mode"] == "files"
    assert labels(nginx)["astats.tls.domains"] == HOST
    assert "acme" not in graph.containers()
    assert graph.stack_outputs["url"] == f"https://{HOST}:8443"


def acme_graph() -> Graph:
    return evaluate(acme())


def test_acme_mode_serves_the_certs_volume_and_waits_for_the_placeholder() -> None:
    graph = acme_graph()
    nginx = graph.containers()["nginx"]
    mounts = {v["containerPath"]: v for v in nginx.inputs["volumes"]}
    assert mounts["/etc/nginx/astats-tls"]["readOnly"] is True
    assert mounts["/srv/astats-acme"]["readOnly"] is True
    assert nginx.inputs["command"] == [
        "/bin/sh",
        "/etc/nginx/astats/run.sh",
        "/etc/nginx/astats-tls/current/fullchain.pem",
    ]
    assert (443, 8443) in published(nginx)
    placeholder = graph.named("acme-placeholder", COMMAND)
    assert graph.waits_for(nginx, placeholder)
    assert graph.stack_outputs["url"] == f"https://{HOST}"


def test_the_acme_client_starts_after_nginx_and_keeps_its_volumes() -> None:
    graph = acme_graph()
    client, nginx = graph.containers()["acme"], graph.containers()["nginx"]
    assert graph.waits_for(client, nginx)
    assert client.inputs["user"] == "10002:101"
    assert client.inputs["readOnly"] is True
    assert client.inputs["capabilities"]["drops"] == ["ALL"]
    assert not any("docker.sock" in str(v) for v in client.inputs.get("volumes", []))
    for name in ("certs", "acme-webroot"):
        volume = graph.named(name, VOLUME)
        assert volume.retain_on_delete
    assert graph.named("certs", VOLUME).protect is False  # dev's data volume is not protected
    assert graph.pids_limit(client) == 64
