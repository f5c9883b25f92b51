"""The lab's TLS material and token: a self-signed CA per lab, a server certificate it signs for
``IP:127.0.0.1`` (Go, hence kubectl, refuses certificates without a matching subjectAltName), and a random bearer
token. Made with the ``cryptography`` package (EC P-256 keys: milliseconds); the CA's key is not kept once the
server certificate is signed. Private key and token files are mode 0600, in the lab's state directory
(``<lab>/apiserver/``), which ``down`` removes.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from emulator.errors import MissingDependencyError


@dataclass(frozen=True)
class Material:
    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def token_file(self) -> Path:
        return self.dir / "token"

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def make(directory: Path, lab: str, ips: tuple[str, ...] = (), dns: tuple[str, ...] = ()) -> Material:
    """Create the CA, the server certificate and key, and the token for ``lab`` in ``directory``; ``ips`` and
    ``dns`` are further names of the server (inside the lab: the ``kubernetes`` Service's ClusterIP and names)."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise MissingDependencyError("the lab's API server needs the cryptography package (for its TLS "
                                     "certificates): apt-get install python3-cryptography, or pip install "
                                     "cryptography", obj="cryptography") from None
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    until = now + datetime.timedelta(days=365)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"podlab-{lab}-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(until)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address(ip)) for ip in ("127.0.0.1", *ips)]
                + [x509.DNSName(d) for d in ("localhost", *dns)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    m = Material(directory)
    m.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    m.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(m.key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    _write_private(m.token_file, (secrets.token_urlsafe(32) + "\n").encode())
    return m
