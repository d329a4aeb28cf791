"""A throwaway certificate authority and loopback server certificate for the local emulators.

The Azure SDKs refuse plain HTTP for anything that carries a bearer token (Key Vault's
challenge policy, azure-identity authorities), so every local emulator speaks HTTPS. Each run
generates a fresh CA and one server certificate valid for 127.0.0.1, ::1 and localhost; any
emulator on any loopback port can serve it, so one `TlsFiles` is enough for the whole stack.

How clients trust it:
- azure-core clients (Key Vault, Storage, azure-identity): pass `connection_verify=str(ca_cert)`.
- anything using Python's default verify paths (aiohttp, httpx, urllib): set
  `SSL_CERT_FILE=<ca_cert>` *before the client library is imported* (aiohttp builds its default
  SSL context at import time). Note that it replaces the system trust store for that process.

Nothing here is meant to protect anything: the CA key is written next to the certificates
(mode 0600) only so a later tool can issue more certificates from the same CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")

# File names inside the directory; fixed so scripts and docs can point at them.
CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files one `generate_tls` call wrote."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path  # the leaf certificate followed by the CA certificate
    server_key: Path
    hosts: tuple[str, ...]

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for an HTTPS server presenting the loopback certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.server_cert, self.server_key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """An SSL context for a client that trusts only this CA (hostname checks stay on)."""
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def client_env(self) -> dict[str, str]:
        """Environment variables that make a child process trust this CA (see module doc)."""
        return {"SSL_CERT_FILE": str(self.ca_cert), "REQUESTS_CA_BUNDLE": str(self.ca_cert)}


def generate_tls(
    directory: Path,
    hosts: Sequence[str] = LOOPBACK_HOSTS,
    valid_for: dt.timedelta = dt.timedelta(days=7),
) -> TlsFiles:
    """Generate a CA and a server certificate for `hosts` (IP addresses or DNS names) and
    write them as PEM files into `directory` (created 0700; keys 0600). Existing files are
    replaced: every start gets a fresh CA, so a leaked one is worthless after a restart."""
    if not hosts:
        raise ValueError("hosts must name at least one IP address or DNS name")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = dt.datetime.now(dt.UTC)
    # Backdate a little: a client whose clock lags ours must not see "not yet valid".
    not_before = now - dt.timedelta(minutes=5)
    not_after = now + valid_for

    # EC P-256 keys: generated in microseconds (RSA-2048 takes tens of milliseconds per key,
    # which adds up when every test starts its own emulator), and every TLS stack accepts them.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "m365-bridge local dev CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    files = TlsFiles(
        directory=directory,
        ca_cert=directory / CA_CERT,
        ca_key=directory / CA_KEY,
        server_cert=directory / SERVER_CERT,
        server_key=directory / SERVER_KEY,
        hosts=tuple(hosts),
    )
    pem = serialization.Encoding.PEM
    _write(files.ca_cert, ca_cert.public_bytes(pem), 0o644)
    _write(files.ca_key, _key_pem(ca_key), 0o600)
    _write(files.server_cert, server_cert.public_bytes(pem) + ca_cert.public_bytes(pem), 0o644)
    _write(files.server_key, _key_pem(server_key), 0o600)
    return files


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    # Create with the final mode (no window where a key is world-readable), then replace
    # atomically so a reader never sees half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)  # O_CREAT's mode is filtered by the umask; a pre-existing tmp keeps its mode
    os.replace(tmp, path)
