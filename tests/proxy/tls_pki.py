"""A throwaway certificate authority for the HTTPS tests and the TLS benchmark.

Shaped like what the stack's ACME client gets from Let's Encrypt, so a TLS scanner grades the
nginx config and not an odd certificate: a root, an intermediate, and a 90-day ECDSA P-256
leaf for `localhost` and 127.0.0.1 that names a CRL and no OCSP responder (Let's Encrypt has
ended OCSP). nginx is handed the leaf followed by the intermediate, as ACME delivers it.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.pki import ca_certificate

LEAF_NAME = "localhost"
LEAF_ADDRESS = "127.0.0.1"
LEAF_DAYS = 90
CRL_URL = "http://crl.astats.invalid/intermediate.crl"


@dataclass(frozen=True)
class Pki:
    ca_pem: bytes
    """The root, for clients to trust."""
    chain_pem: bytes
    """Leaf then intermediate: nginx's `ssl_certificate`."""
    key_pem: bytes
    """The leaf's private key: nginx's `ssl_certificate_key`."""

    def write_ca(self, directory: Path) -> Path:
        path = directory / "test-ca.pem"
        path.write_bytes(self.ca_pem)
        return path


def make_pki() -> Pki:
    now = datetime.datetime.now(datetime.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = ca_certificate("astats test root", root_key, None, now, path_length=1)
    middle_key = ec.generate_private_key(ec.SECP256R1())
    middle = ca_certificate(
        "astats test intermediate", middle_key, (root, root_key), now, path_length=0
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LEAF_NAME)]))
        .issuer_name(middle.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(LEAF_NAME),
                    x509.IPAddress(ipaddress.ip_address(LEAF_ADDRESS)),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(CRL_URL)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(middle_key.public_key()), False
        )
        .sign(middle_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Pki(
        ca_pem=root.public_bytes(pem),
        chain_pem=leaf.public_bytes(pem) + middle.public_bytes(pem),
        key_pem=leaf_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
