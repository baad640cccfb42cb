"""``raftkv certs create``: a CA, a node certificate and a client certificate for trying
TLS out (the ``cryptography`` package). Not a PKI: for production use your own CA.

Files in ``--out``: ``ca.crt``/``ca.key`` (the CA), ``node.crt``/``node.key`` (usable as
both server and client certificate, so one pair serves a node's peer links both ways;
subject alternative names from ``--hosts``), ``client.crt``/``client.key`` (client-only).
Private keys are written 0600 and never overwritten (an existing file is an error).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("127.0.0.1", "localhost")
VALID_DAYS = 825  # the longest validity Apple's TLS policy accepts for a server cert


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RaftKV"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
             days: int, now: datetime.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days)))


def make_ca(common_name: str = "RaftKV CA", days: int = VALID_DAYS,
            ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (_builder(_name(common_name), _name(common_name), key, days, now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, common_name: str,
          hosts: tuple[str, ...], *, server: bool, client: bool, days: int = VALID_DAYS,
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate signed by the CA, for TLS server and/or client use."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    builder = (_builder(_name(common_name), ca_cert.subject, key, days, now)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _write(path: Path, data: bytes, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_pair(out: Path, stem: str, cert: x509.Certificate,
               key: ec.EllipticCurvePrivateKey) -> None:
    _write(out / f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM), private=False)
    _write(out / f"{stem}.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), private=True)


def create(out: Path, hosts: tuple[str, ...] = DEFAULT_HOSTS) -> list[Path]:
    """Make ca, node and client pairs in ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    names = [out / f"{stem}.{ext}" for stem in ("ca", "node", "client")
             for ext in ("crt", "key")]
    existing = [p for p in names if p.exists()]
    if existing:
        raise FileExistsError(f"{existing[0]} exists; choose another --out")
    ca_cert, ca_key = make_ca()
    write_pair(out, "ca", ca_cert, ca_key)
    write_pair(out, "node", *issue(ca_cert, ca_key, "raftkv node", hosts,
                                   server=True, client=True))
    write_pair(out, "client", *issue(ca_cert, ca_key, "raftkv client", (),
                                     server=False, client=True))
    return names
