"""Test certificates made at run time: a CA, a server certificate for 127.0.0.1/localhost, client certificates.

EC P-256 keys (fast to make); everything is written as PEM files into one
directory. A second, unrelated CA signs the "stranger" client certificate,
which a server that trusts only the first CA must refuse.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# A name the server certificate holds besides localhost and 127.0.0.1 (for server_name=).
SERVER_NAME = "policy.test"


@dataclasses.dataclass(frozen=True)
class Certs:
    """Paths of the PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    stranger_cert: Path  # a client certificate signed by other_ca
    stranger_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2)))


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(common_name, _name(common_name), key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def _leaf(common_name: str, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], usage, names=()):
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (_builder(common_name, ca[0].subject, key.public_key())
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(ca[1], hashes.SHA256()), key


def _write(directory: Path, stem: str, cert: x509.Certificate, key=None) -> tuple[Path, Path | None]:
    cert_path = directory / f"{stem}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is None:
        return cert_path, None
    key_path = directory / f"{stem}.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def make_certs(directory: Path) -> Certs:
    """Makes every certificate and key into `directory`."""
    ca, other_ca = _ca("tfa-policy-grpc test CA"), _ca("some other CA")
    server = _leaf("policy server", ca, ExtendedKeyUsageOID.SERVER_AUTH,
                   [x509.DNSName("localhost"), x509.DNSName(SERVER_NAME),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))])
    client = _leaf("actor-1", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger = _leaf("stranger", other_ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    ca_path, _ = _write(directory, "ca", ca[0])
    other_ca_path, _ = _write(directory, "other_ca", other_ca[0])
    server_paths = _write(directory, "server", *server)
    client_paths = _write(directory, "client", *client)
    stranger_paths = _write(directory, "stranger", *stranger)
    return Certs(ca_path, *server_paths, *client_paths, other_ca_path, *stranger_paths)
