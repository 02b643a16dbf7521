"""A private certificate authority for the local cluster, with Python's `cryptography`.

The CA signs one certificate per node (SAN: localhost, 127.0.0.1 and the node's compose
host name), used for the client listener and, with client authentication, between
controllers. Keys are written once, PEM, mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ecom.kafka.security import write_private

VALID_DAYS = 825


_CA_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True,
    crl_sign=True, encipher_only=False, decipher_only=False,
)  # fmt: skip


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _dates() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=VALID_DAYS)


def make_ca(folder: Path, key_folder: Path | None = None) -> None:
    """Make the CA (ca.pem public in folder, ca-key.pem private in key_folder, by
    default the same) unless it exists."""
    key_folder = key_folder or folder
    if (folder / "ca.pem").is_file():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _dates()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("ecomstream local CA"))
        .issuer_name(_name("ecomstream local CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .sign(key, hashes.SHA256())
    )
    write_private(key_folder / "ca-key.pem", _key_pem(key))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.pem").write_text(_cert_pem(cert))


def make_node_certificate(
    ca_folder: Path, common_name: str, hosts: list[str], out: Path, key_folder: Path | None = None
) -> None:
    """Write `out`: the node's private key and its certificate chain, one PEM file (what
    Kafka's PEM keystore reads)."""
    key_path = (key_folder or ca_folder) / "ca-key.pem"
    ca_key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((ca_folder / "ca.pem").read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    start, end = _dates()
    usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    write_private(out, _key_pem(key) + _cert_pem(cert) + _cert_pem(ca_cert))
