"""HTTPS at nginx: where its certificate comes from, and what nginx is given to serve it.

`tls.mode` picks one of three:
- `off`: plain HTTP, as before;
- `files`: the operator's own chain and key (the secrets `tlsCertificate`, `tlsPrivateKey`)
  reach nginx through its read-only files volume, like its config;
- `acme`: an ACME client of the stack's own (components/acme.py) obtains and renews them into
  the certs volume. nginx mounts it read-only, starts on a placeholder pair before the first
  issuance, and reloads itself when the chain changes (components/files/nginx-run.sh): no
  container is given the Docker socket. The client starts once nginx serves the HTTP-01
  challenges, and `pulumi up` waits until nginx serves the issued certificate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi

from components.acme import (
    CERTS_DIR,
    CURRENT_DIR,
    WEBROOT_DIR,
    acme_image,
    acme_spec,
    placeholder_step,
)
from components.config import StackConfig, StackSettings
from components.container import Mount, StackContext
from components.nginx_conf import TlsConf
from components.service import Service

HTTPS_LISTEN_PORT = 8443
"""nginx's HTTPS port inside its container: unprivileged, like 8080 for HTTP."""
NGINX_TLS_DIR = "/etc/nginx/astats-tls"
"""Where nginx mounts the certs volume (read-only)."""
NGINX_ACME_WEBROOT = WEBROOT_DIR
FILES_CHAIN = "tls-fullchain.pem"
FILES_KEY = "tls-privkey.pem"


@dataclass(frozen=True)
class NginxTls:
    """What nginx needs to serve HTTPS: the rendered part, the volumes, the files (the
    operator's pair), the file whose change reloads it, and labels the console reads."""

    conf: TlsConf
    host_port: int
    mounts: Sequence[Mount] = ()
    files: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    watched: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    after: Sequence[pulumi.Resource] = ()
    """What must be in place before nginx starts (the placeholder pair)."""


def _labels(mode: str, domains: Sequence[str], chain: str) -> dict[str, str]:
    return {
        "astats.tls.mode": mode,
        "astats.tls.domains": " ".join(domains),
        "astats.tls.certificate": chain,
    }


def files_tls(config: StackConfig, config_dir: str) -> NginxTls:
    """The operator's own pair, written into nginx's files volume at `config_dir`."""
    settings, secrets = config.settings, config.secrets
    if secrets.tls_certificate is None or secrets.tls_private_key is None:
        raise ValueError("tls.mode files without the tlsCertificate/tlsPrivateKey secrets")
    chain, key = f"{config_dir}/{FILES_CHAIN}", f"{config_dir}/{FILES_KEY}"
    return NginxTls(
        conf=TlsConf(
            certificate=chain,
            certificate_key=key,
            listen_port=HTTPS_LISTEN_PORT,
            public_port=settings.tls.https_port,
            hsts=settings.tls.hsts,
        ),
        host_port=settings.tls.https_port,
        files={FILES_CHAIN: secrets.tls_certificate, FILES_KEY: secrets.tls_private_key},
        labels=_labels("files", settings.tls_domains, chain),
    )


class Certificates(pulumi.ComponentResource):
    """The ACME client: its image, the placeholder pair, and (once nginx runs) its container."""

    nginx_tls: NginxTls
    client: AcmeClient | None = None

    def __init__(
        self,
        name: str,
        config: StackConfig,
        stack: StackContext,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("astats:tls:Certificates", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings = config.settings
        certs, webroot = stack.volumes.certs, stack.volumes.acme_webroot
        if certs is None or webroot is None:
            raise ValueError("tls.mode acme without the certs and acme-webroot volumes")
        self._stack, self._settings = stack, settings
        self._volumes = (certs, webroot)
        self.image = acme_image("acme-image", stack=stack, settings=settings.tls.acme, opts=child)
        placeholder = placeholder_step(self, stack, image=self.image, certs_volume=certs, after=[])
        in_nginx = CURRENT_DIR.replace(CERTS_DIR, NGINX_TLS_DIR, 1)
        chain = f"{in_nginx}/fullchain.pem"
        self.nginx_tls = NginxTls(
            conf=TlsConf(
                certificate=chain,
                certificate_key=f"{in_nginx}/privkey.pem",
                listen_port=HTTPS_LISTEN_PORT,
                public_port=settings.tls.https_port,
                hsts=settings.tls.hsts,
                acme_webroot=NGINX_ACME_WEBROOT,
            ),
            host_port=settings.tls.https_port,
            mounts=(
                Mount(certs, NGINX_TLS_DIR, read_only=True),
                Mount(webroot, NGINX_ACME_WEBROOT, read_only=True),
            ),
            watched=chain,
            labels=_labels("acme", settings.tls_domains, chain),
            after=(placeholder,),
        )
        self.register_outputs({})

    def start_client(self, nginx: Service) -> AcmeClient:
        """Start the client once nginx serves the challenges; healthy once nginx serves the
        certificate it obtained."""
        certs, webroot = self._volumes
        served = nginx.container.name.apply(lambda name: f"{name}:{HTTPS_LISTEN_PORT}")
        self.client = AcmeClient(
            "acme",
            stack=self._stack,
            config=self._settings,
            image=self.image,
            volumes=(certs, webroot),
            served=served,
            after=[nginx.container],
            opts=pulumi.ResourceOptions(parent=self),
        )
        return self.client


class AcmeClient(Service):
    """The ACME client's long-running container."""

    def __init__(
        self,
        name: str,
        *,
        stack: StackContext,
        config: StackSettings,
        image: pulumi.Input[str],
        volumes: tuple[pulumi.Input[str], pulumi.Input[str]],
        served: pulumi.Output[str],
        after: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("astats:tls:AcmeClient", name, None, opts)
        spec = acme_spec(
            stack,
            config,
            image=image,
            certs_volume=volumes[0],
            webroot_volume=volumes[1],
            served_address=served,
        )
        self.run(stack, spec, after=after)
