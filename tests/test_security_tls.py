"""TLS between the kiosk and the collector (issue 8, "Security"), with certificates made here:

- `kiosk collector` serves HTTPS from the certificate and key in its configuration (a test CA
  signed the certificate for 127.0.0.1 and localhost); plain HTTP on that port gets nothing;
- the kiosk's sync verifies the collector against the CA file of its configuration and delivers;
- a collector certificate from another CA, or one for another host name, is refused: nothing is
  sent (the token never leaves), the failure says "certificate" and names collector.ca_file, in
  the sync status (the attendant's page) and in an ERROR log line;
- a missing or mismatched certificate or key is one clear line at start, exit 2.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import ipaddress
import logging
import os
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from door_process import kiosk_command
from test_fuzz_support import record_figures
from test_sync_fake import DRAFT

from kiosk.cli import main
from kiosk.door.app import ClockOffset, DoorRuntime
from kiosk.door.config import KioskConfig
from kiosk.door.knowledge import KnowledgeHolder, stale_knowledge
from kiosk.door.store import EntryLog
from kiosk.door.sync import RetryPolicy, SyncService

KIOSK_ID, VENUE_ID = "k-tls-1", "v-tls-1"
NOW = dt.datetime.now(dt.UTC)


# -- a small PKI ------------------------------------------------------------------------------


@dataclass
class Issued:
    cert: Path
    key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey,
           chain: tuple[x509.Certificate, ...] = ()) -> Issued:
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                   for c in (cert, *chain)))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return Issued(cert_path, key_path)


class LocalCA:
    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name)).issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(hours=1))
            .not_valid_after(NOW + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = _write(folder, name, self.cert, self.key).cert

    def server(self, stem: str, names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        alternative: list[x509.GeneralName] = []
        for name in names:
            try:
                alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternative.append(x509.DNSName(name))
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0])).issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(hours=1))
            .not_valid_after(NOW + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return _write(self.folder, stem, cert, key)


# -- the collector as a process ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(*args: str, config: Path) -> tuple[int, str, str]:
    """`kiosk COMMAND --config FILE ARGS...` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([*args[:1], "--config", str(config), *args[1:]])
    return status, out.getvalue(), err.getvalue()


def write_config(folder: Path, issued: Issued, port: int) -> Path:
    """The collector's configuration in `folder`, naming copies of the certificate and key
    beside it by relative paths (taken from the configuration file's folder)."""
    for source in (issued.cert, issued.key):
        if source.exists() and source.parent != folder:
            (folder / source.name).write_bytes(source.read_bytes())
    config = folder / "collector.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nshutdown_timeout = 1\n'
        f'tls_cert = "{issued.cert.name}"\ntls_key = "{issued.key.name}"\n'  # relative: base dir
        f'[database]\nurl = "sqlite:///{folder}/collector.db"\n'
    )
    return config


@dataclass
class Running:
    url: str
    folder: Path
    token_file: Path
    output: list[str]

    def stored_ids(self) -> set[str]:
        with sqlite3.connect(self.folder / "collector.db") as db:
            rows = db.execute("SELECT id FROM entries").fetchall()
        db.close()
        return {row[0] for row in rows}


@contextlib.contextmanager
def tls_collector(folder: Path, issued: Issued) -> Iterator[Running]:
    port = free_port()
    config = write_config(folder, issued, port)
    assert run("admin", "add-venue", VENUE_ID, "--name", "TLS", "--region", "city/tls",
               config=config)[0] == 0
    status, token, err = run("admin", "add-kiosk", KIOSK_ID, "--venue", VENUE_ID, config=config)
    assert status == 0, err
    token_file = folder / "kiosk.token"
    token_file.write_text(token)
    process = subprocess.Popen(
        [*kiosk_command(), "collector", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output: list[str] = []
    listening = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            output.append(line)
            if "listening on" in line:
                listening.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not listening.wait(0.1):
            assert process.poll() is None and time.monotonic() < deadline, "".join(output)
        assert any(f"listening on https://127.0.0.1:{port}" in line for line in output)
        yield Running(f"https://127.0.0.1:{port}", folder, token_file, output)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        reader.join(5)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalCA, LocalCA]:
    folder = tmp_path_factory.mktemp("pki")
    return LocalCA(folder, "kiosk-test-ca"), LocalCA(folder, "some-other-ca")


@pytest.fixture(scope="module")
def collector(
    pki: tuple[LocalCA, LocalCA], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    ca, _ = pki
    folder = tmp_path_factory.mktemp("tls-collector")
    with tls_collector(folder, ca.server("collector")) as running:
        yield running


# -- the kiosk's side ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def kiosk_sync(folder: Path, url: str, token_file: Path,
                     ca_file: Path | None) -> AsyncIterator[tuple[SyncService, EntryLog]]:
    config = KioskConfig.model_validate({
        "kiosk": {"id": KIOSK_ID, "venue_id": VENUE_ID, "state_dir": str(folder / "state")},
        "collector": {"url": url, "token_file": str(token_file), "timeout": 5,
                      **({"ca_file": str(ca_file)} if ca_file else {})},
    })
    entry_log = await EntryLog.open(config.kiosk.state_dir / "entries.db",
                                    kiosk_id=KIOSK_ID, venue_id=VENUE_ID)
    runtime = DoorRuntime(config=config, entry_log=entry_log,
                          knowledge=KnowledgeHolder(stale_knowledge(config)),
                          clock_offset=ClockOffset(),
                          sensor_states=lambda: {"camera": "ok", "thermometer": "ok"})
    service = SyncService(runtime, retry=RetryPolicy(base_s=0.05, cap_s=0.2))
    try:
        yield service, entry_log
    finally:
        await service.close()
        await entry_log.close()


async def write_entries(entry_log: EntryLog, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        entry = await entry_log.append(DRAFT)
        ids.append(entry["id"])
    return ids


async def test_the_kiosk_verifies_the_collector_against_its_ca_file_and_delivers(
    collector: Running, pki: tuple[LocalCA, LocalCA], tmp_path: Path
) -> None:
    ca, _ = pki
    async with kiosk_sync(tmp_path, collector.url, collector.token_file, ca.pem) as (sync, log):
        ids = await write_entries(log, 5)
        assert await sync.drain() is None
        assert await sync.send_heartbeat() is None
        assert sync.status.collector == "ok" and sync.status.alert is None
    assert set(ids) <= collector.stored_ids()
    record_figures("security-tls", {"entries_over_tls": len(ids), "refused_cases": 3})


@pytest.mark.parametrize("trust", ["another CA", "the system's CAs"])
async def test_an_unknown_collector_certificate_is_refused_and_said_so(
    collector: Running, pki: tuple[LocalCA, LocalCA], tmp_path: Path, trust: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, other = pki
    ca_file = other.pem if trust == "another CA" else None
    before = collector.stored_ids()
    with caplog.at_level(logging.WARNING):
        async with kiosk_sync(tmp_path, collector.url, collector.token_file, ca_file) as (
            sync, log,
        ):
            await write_entries(log, 3)
            failure = await sync.drain()
            assert failure is not None and failure.kind == "tls"
            assert "certificate" in failure.detail
            alert = sync.status.alert or ""
            assert "certificate" in alert and "ca_file" in alert, alert
            assert sync.status.collector == "unreachable"
            assert (await log.stats()).backlog == 3  # kept, to send once trust is fixed
    assert collector.stored_ids() == before
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("certificate" in r.getMessage() for r in errors), caplog.text


@pytest.fixture
def elsewhere(pki: tuple[LocalCA, LocalCA], tmp_path: Path) -> Iterator[Running]:
    """A collector whose certificate (from the kiosk's own CA) names another host."""
    ca, _ = pki
    wrong = ca.server("elsewhere", names=("collector.elsewhere.example",))
    folder = tmp_path / "collector"
    folder.mkdir()
    with tls_collector(folder, wrong) as running:
        yield running


async def test_a_certificate_for_another_host_name_is_refused(
    elsewhere: Running, pki: tuple[LocalCA, LocalCA], tmp_path: Path
) -> None:
    ca, _ = pki
    async with kiosk_sync(tmp_path, elsewhere.url, elsewhere.token_file, ca.pem) as (sync, log):
        await write_entries(log, 1)
        failure = await sync.drain()
        assert failure is not None and failure.kind == "tls", failure
        assert "certificate" in (sync.status.alert or "")
    assert elsewhere.stored_ids() == set()


def test_plain_http_to_the_tls_port_gets_no_service(collector: Running) -> None:
    port = int(collector.url.rsplit(":", 1)[1])
    token = collector.token_file.read_text().strip()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /api/v1/kiosk/config HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {token}\r\n\r\n".encode())
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                answer += chunk
    assert b"pseudonym_key" not in answer and not answer.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("fault", ["missing certificate", "key of another certificate"])
def test_a_bad_certificate_or_key_is_one_line_at_start(
    pki: tuple[LocalCA, LocalCA], tmp_path: Path, fault: str
) -> None:
    ca, _ = pki
    good = ca.server("good")
    if fault == "missing certificate":
        issued = Issued(tmp_path / "absent.pem", good.key)
    else:
        issued = Issued(good.cert, ca.server("other").key)
    config = write_config(tmp_path, issued, free_port())
    status, _, err = run("collector", config=config)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kiosk: "), err
    assert "tls" in lines[0] and "Traceback" not in err
