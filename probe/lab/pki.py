"""The lab's certificate authority: a throwaway CA that issues server certificates.

The lab (and the tests) impersonate X's servers on addresses they control, so
they need certificates the probe can be told to trust (``ca_bundle``), and
broken ones (wrong name, expired, unknown issuer) to check that the probe
names each failure correctly.

Design: everything lives in memory as PEM bytes; nothing touches the disk
unless :func:`write_pair` is called, because ``ssl.SSLContext.load_cert_chain``
only reads files. Keys are EC P-256, so a CA and dozens of leaves take
milliseconds. Leaves carry the extensions strict verifiers (OpenSSL's
``X509_STRICT``, Python >= 3.13 defaults) insist on: SKI/AKI, key usage,
``serverAuth``, and SANs, which are what hostname checking reads.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Authority", "Issued", "write_pair"]

_CA_LIFETIME: Final = timedelta(days=3650)
_LEAF_LIFETIME: Final = timedelta(days=90)
# Backdating absorbs clock skew between the lab's hosts and the probe.
_BACKDATE: Final = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


class Authority:
    """A self-signed CA that issues leaf certificates for the lab's servers."""

    __slots__ = ("_cert", "_key")

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self._cert = cert
        self._key = key

    @classmethod
    def create(cls, name: str = "probe lab CA") -> Authority:
        """A fresh CA with a new key, named ``name`` (its CN and O)."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            ]
        )
        now = datetime.now(UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM: what the probe's ``ca_bundle`` file holds."""
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        names: Sequence[str],
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        ip_addresses: Sequence[str] = (),
    ) -> Issued:
        """A leaf valid for DNS ``names`` (wildcards allowed) and ``ip_addresses``.

        The validity defaults to "now, for 90 days"; pass dates in the past to
        get an expired certificate. Raises ValueError if there is no name at all.
        """
        if not names and not ip_addresses:
            raise ValueError("a certificate needs at least one DNS name or IP address")
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        end = not_after if not_after is not None else now + _LEAF_LIFETIME
        # An explicit past ``not_after`` alone still yields a well-formed (expired) window.
        start = not_before if not_before is not None else min(now - _BACKDATE, end - _LEAF_LIFETIME)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        common_name = names[0] if names else ip_addresses[0]
        issuer_ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def write_pair(issued: Issued, directory: Path, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.crt`` and ``<stem>.key`` (mode 0600) into ``directory``."""
    cert_path = directory / f"{stem}.crt"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(issued.cert_pem)
    # Create the key 0600 from the start: never world-readable, not even briefly.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as key_file:
        os.fchmod(key_file.fileno(), 0o600)  # an existing file keeps its old mode otherwise
        key_file.write(issued.key_pem)
    return cert_path, key_path


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """CA: sign certificates and CRLs; leaf (ECDSA): sign handshakes only."""
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
