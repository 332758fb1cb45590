"""TLS to the collector: the kiosk verifies the collector's certificate against the CA file of its
configuration (certificates made by this test), and refuses one it does not trust before any
token or entry leaves it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_sync_fake import make_sync_kit


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer[0] if issuer else subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if issuer is None:  # a CA
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        return builder.sign(key, hashes.SHA256())
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        False,
    )
    return builder.sign(issuer[1], hashes.SHA256())


def _pem(path: Path, certificate: x509.Certificate) -> Path:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def make_pki(folder: Path) -> tuple[ssl.SSLContext, Path, Path]:
    """The collector's TLS context, the CA file that signed its certificate, and another CA's."""
    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("kiosk test CA", ca_key)
    other = _certificate("some other CA", other_key)
    server = _certificate("127.0.0.1", server_key, ("kiosk test CA", ca_key))
    key_file = folder / "server.key"
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(_pem(folder / "server.pem", server), key_file)
    return context, _pem(folder / "ca.pem", ca), _pem(folder / "other-ca.pem", other)


async def test_a_collector_signed_by_the_configured_ca_is_trusted(tmp_path: Path) -> None:
    context, ca_file, _ = make_pki(tmp_path)
    async with make_sync_kit(tmp_path, tls=context, ca_file=str(ca_file)) as kit:
        assert kit.collector.url.startswith("https://")
        await kit.write(3)
        service = kit.service()
        assert await service.drain() is None
        assert await service.pull_config() is None
        assert len(kit.collector.entries) == 3 and service.status.alert is None


async def test_an_unknown_certificate_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    context, _, other_ca = make_pki(tmp_path)
    async with make_sync_kit(tmp_path, tls=context, ca_file=str(other_ca)) as kit:
        await kit.write(3)
        service = kit.service()
        failure = await service.drain()
        assert failure is not None and failure.kind == "tls"
        assert service.status.collector == "unreachable"
        assert "ca_file" in (service.status.alert or "")
        assert kit.collector.bodies == []  # no token, no entry reached it
        assert (await kit.log.stats()).backlog == 3
