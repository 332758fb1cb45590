"""Secrets stay secret (issue 8, "Security"):

- tokens are 32 random bytes in base64url (43 characters), shown once (only on the stdout of
  the command that makes them), stored as SHA-256 hashes only (the whole database searched, on
  SQLite and PostgreSQL), and the database is only ever asked for the hash: no stored secret is
  compared in Python, so no timing of a comparison can leak one;
- a full run (collector, `kiosk admin`, a `kiosk run` door syncing its decisions, an inspector on
  the API and the dashboard, an admin publishing, and failed attempts with revoked, rotated and
  made-up tokens) with every log captured at debug level: no token and not the deployment's
  pseudonym key appear in any log, any error answer, the metrics or the OpenAPI document.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import io
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import asyncpg
import cv2
import numpy as np
from collector_helpers import Collector
from door_process import DoorProcess, kiosk_command
from test_fuzz_support import record_figures
from test_sync_e2e import VENUE, Deployment, VisitDevices, kiosk_config, wait_until

from kiosk.cli import main
from kiosk.collector.tokens import new_token, token_hash
from kiosk.demo.frames import camera_frame
from kiosk.demo.kit import make_kit, to_toml
from kiosk.wire import format_rfc3339


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(args))
    return status, out.getvalue(), err.getvalue()


# -- tokens ---------------------------------------------------------------------------------


def test_tokens_are_32_random_bytes_in_base64url() -> None:
    tokens = [new_token() for _ in range(2000)]
    assert len(set(tokens)) == len(tokens)
    ones = 0
    for token in tokens:
        assert len(token) == 43 and set(token) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )
        raw = base64.urlsafe_b64decode(token + "=")
        assert len(raw) == 32
        ones += sum(bin(byte).count("1") for byte in raw)
    share = ones / (len(tokens) * 256)
    assert 0.49 < share < 0.51  # 512,000 bits: a biased source would show (6 sigma is 0.004)


def database_text(database_url: str, folder: Path) -> bytes:
    """Everything the database holds, as bytes to search: the SQLite files (with the WAL), or
    every row of every table of the PostgreSQL schema as JSON."""
    if database_url.startswith("sqlite"):
        return b"".join(p.read_bytes() for p in folder.glob("collector.db*"))

    async def dump() -> bytes:
        conn = await asyncpg.connect(database_url.split("?")[0], server_settings={
            "search_path": urllib.parse.parse_qs(urllib.parse.urlsplit(database_url).query)
            .get("search_path", ["public"])[0]})
        try:
            tables = [r[0] for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
            chunks = []
            for table in tables:
                for row in await conn.fetch(f'SELECT row_to_json(t)::text FROM "{table}" t'):
                    chunks.append(row[0].encode())
            return b"\n".join(chunks)
        finally:
            await conn.close()

    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(dump())).result()


def test_tokens_are_shown_once_and_stored_only_as_hashes(
    database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(f'[server]\nport = 0\n[database]\nurl = "{database_url}"\n')
    base = ["admin", "--config", str(config)]
    shown: list[str] = []
    outputs: list[str] = []
    for command in (
        ["add-venue", "v-1", "--name", "S", "--region", "city/d1"],
        ["add-kiosk", "k-1", "--venue", "v-1"],
        ["add-inspector", "ana", "--region", "city"],
        ["add-admin", "root"],
        ["rotate-token", "ana"],
        ["rotate-token", "k-1"],
        ["revoke-token", "root"],
    ):
        status, out, err = cli(*base, *command)
        assert status == 0, err
        outputs.append(err)
        if out:
            token = out.strip()
            assert out == token + "\n" and len(token) == 43
            assert all(token not in earlier for earlier in outputs)
            shown.append(token)
        outputs.append(out)
    assert len(shown) == 5 and len(set(shown)) == 5
    for token in shown:  # each token on exactly one stdout, never on stderr
        assert sum(token in text for text in outputs) == 1
    held = database_text(database_url, tmp_path)
    for token in shown:
        assert token.encode() not in held
    current = [shown[3], shown[4]]  # the rotated ones: ana's and k-1's new tokens
    for token in current:
        assert token_hash(token).encode() in held


async def test_the_database_is_only_ever_asked_for_a_hash(collector: Collector) -> None:
    """The lookup is by SHA-256 of what was presented: no secret is compared in Python, and
    timing the indexed lookup tells nothing about a stored token (preimage resistance)."""
    storage = collector.storage
    asked: list[Any] = []
    real = storage.principal_by_token

    async def recording(hashed: str) -> Any:
        asked.append(hashed)
        return await real(hashed)

    storage.principal_by_token = recording  # type: ignore[method-assign]
    p = collector.provisioned
    presented = [p.tokens["k-a"], p.tokens["insp-d1"], new_token(), p.tokens["root"][:-1] + "A"]
    for token in presented:
        await collector.client.get("/api/v1/kiosk/config",
                                   headers={"Authorization": f"Bearer {token}"})
    assert asked == [hashlib.sha256(token.encode()).hexdigest() for token in presented]
    assert not {token for token in presented} & set(asked)


# -- a full run, every log captured ---------------------------------------------------------------


class VerboseCollector:
    """`kiosk -v collector` as a child: stdout and stderr kept whole."""

    def __init__(self, config: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [*kiosk_command(), "-v", "collector", "--config", str(config), "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.output: list[bytes] = []
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if b"listening on" in line:
                self._listening.set()

    def wait_listening(self) -> None:
        assert self._listening.wait(60), b"".join(self.output)[-2000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._reader.join(5)


class Client:
    """Plain HTTP to the collector; every answer body is kept for the search."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: list[bytes] = []

    def call(self, method: str, path: str, token: str | None = None, body: Any = None,
             headers: dict[str, str] | None = None, raw: bytes | None = None,
             keep: bool = True) -> tuple[int, dict[str, str], bytes]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            answer = response.read()
        finally:
            conn.close()
        if keep:
            self.answers.append(answer)
        received = dict(response.getheaders())
        received["Set-Cookie"] = "\n".join(response.msg.get_all("Set-Cookie") or [])
        return response.status, received, answer


def test_no_token_or_pseudonym_key_in_any_log_error_or_the_openapi_document(
    tmp_path: Path, free_port: int
) -> None:
    folder = tmp_path / "collector"
    folder.mkdir()
    database = folder / "collector.db"
    config = folder / "collector.toml"
    config.write_text(f'[server]\nhost = "127.0.0.1"\nport = {free_port}\nshutdown_timeout = 1\n'
                      f'[database]\nurl = "sqlite:///{database}"\n')
    admin_err: list[str] = []
    tokens: dict[str, str] = {}

    def admin(*args: str) -> str:
        status, out, err = cli("admin", "--config", str(config), *args)
        assert status == 0, err
        admin_err.append(err)
        return out.strip()

    admin("add-venue", VENUE, "--name", "Gate 1", "--region", "city/d1")
    admin("add-venue", "v-other", "--name", "Other", "--region", "city/d2")
    for kiosk_id, venue in (("k-door", VENUE), ("k-revoked", VENUE), ("k-far", "v-other")):
        tokens[kiosk_id] = admin("add-kiosk", kiosk_id, "--venue", venue)
    tokens["inspector-old"] = admin("add-inspector", "ana", "--region", "city/d1")
    tokens["inspector"] = admin("rotate-token", "ana")
    tokens["admin"] = admin("add-admin", "root")
    admin("revoke-token", "k-revoked")
    token_files = {}
    for kiosk_id in ("k-door", "k-revoked"):
        token_files[kiosk_id] = folder / f"{kiosk_id}.token"
        token_files[kiosk_id].write_text(tokens[kiosk_id] + "\n")

    (tmp_path / "door").mkdir()
    kit = make_kit(tmp_path / "door")
    now = int(time.time())
    blank = np.full((480, 640, 3), 128, dtype=np.uint8)
    frames = [blank, camera_frame([kit.issuer.code("green", now)], size=(640, 480))] * 1
    frames += [blank] * 4 + [camera_frame([kit.issuer.code("red", now)], size=(640, 480))]
    frames += [blank] * 4
    for index, image in enumerate(frames):
        cv2.imwrite(str(kit.frames / f"frame-{index:03d}.png"), image)
    deployment = Deployment(folder, config, database, dict(token_files))

    def door_config(kiosk_id: str, name: str) -> Path:
        settings = kiosk_config(kit, deployment, kiosk_id, free_port).model_dump(mode="json")
        settings["camera"] = {"source": str(kit.frames), "fps": 5.0, "loop": False}
        settings["local_api"] = {"host": "127.0.0.1", "port": 0}
        settings["kiosk"]["state_dir"] = str(tmp_path / name)
        for section in settings.values():
            for key in [k for k, v in section.items() if v is None or isinstance(v, dict)]:
                del section[key]
        path = tmp_path / f"{name}.toml"
        path.write_text(to_toml(settings))
        return path

    collector = VerboseCollector(config, free_port)
    client = Client(free_port)
    doors: list[DoorProcess] = []
    status_pages: list[bytes] = []
    try:
        collector.wait_listening()
        # The admin publishes the issuer's trust list, a revocation list and a policy.
        assert client.call("PUT", "/api/v1/trust-list", tokens["admin"],
                           kit.issuer.trust.to_jwks())[0] == 200
        assert client.call("PUT", "/api/v1/revocation-list", tokens["admin"],
                           {"updated": now, "revoked": []})[0] == 200
        assert client.call("PUT", "/api/v1/policy/general", tokens["admin"], {
            "policy_version": "secret-test-1", "max_temperature_c": 37.3,
            "accepted_status": ["green"], "mask_required": True})[0] == 200
        # Only the kiosk's own configuration holds the pseudonym key (not kept for the search).
        status, _, answer = client.call("GET", "/api/v1/kiosk/config", tokens["k-door"],
                                        keep=False)
        assert status == 200
        pseudonym_key = json.loads(answer)["pseudonym_key"]["key"]

        devices = VisitDevices()
        door = DoorProcess(door_config("k-door", "door"), on_line=devices)
        doors.append(door)
        refused = DoorProcess(door_config("k-revoked", "refused"))
        doors.append(refused)
        door.wait_for("ready")
        refused.wait_for("ready")
        while len(door.decisions()) < 2:
            door.wait_for("decision", timeout=60)
        decided = {line["entry_id"] for line in door.decisions()}
        wait_until(lambda: {r[0] for r in deployment.rows(
            "SELECT id FROM entries WHERE kiosk_id = 'k-door'")} == decided, within=60)
        for process in (door, refused):
            assert process.url is not None
            with contextlib.suppress(OSError):
                parts = urllib.parse.urlsplit(process.url)
                conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
                conn.request("GET", "/api/status")
                status_pages.append(conn.getresponse().read())
                conn.close()

        # The inspector reads, exports, closes and reopens; signs in to the dashboard.
        window = "since={}&until={}".format(
            *(format_rfc3339(now + days * 86400) for days in (-1, 1)))
        for path in (f"/api/v1/noncompliant?{window}", f"/api/v1/units/{VENUE}?{window}"):
            assert client.call("GET", path, tokens["inspector"])[0] == 200
        assert client.call("GET", f"/api/v1/units/{VENUE}?{window}", tokens["inspector"],
                           headers={"Accept": "text/csv"})[0] == 200
        assert client.call("POST", f"/api/v1/units/{VENUE}/status", tokens["inspector"],
                           {"status": "closed", "note": "checked"})[0] == 200
        origin = {"Origin": f"http://127.0.0.1:{free_port}", "Cookie": "kiosk_sign_in=n1",
                  "Content-Type": "application/x-www-form-urlencoded"}
        form = urllib.parse.urlencode({"token": tokens["inspector"], "nonce": "n1",
                                       "next": "/dashboard/"}).encode()
        status, headers, _ = client.call("POST", "/dashboard/sign-in", raw=form, headers=origin)
        assert status in (302, 303), status
        cookie = next(line.split(";", 1)[0] for line in headers["Set-Cookie"].splitlines()
                      if "kiosk_sign_in" not in line)
        for path in ("/dashboard/", f"/dashboard/units/{VENUE}"):
            assert client.call("GET", path, headers={"Cookie": cookie})[0] == 200
        assert client.call("GET", "/api/v1/audit", tokens["admin"])[0] == 200

        # Failed attempts of every kind, their answers kept.
        attempts = [
            ("GET", "/api/v1/kiosk/config", tokens["k-revoked"], None),
            ("GET", "/api/v1/kiosk/config", tokens["inspector-old"], None),
            ("GET", "/api/v1/kiosk/config", new_token(), None),
            ("GET", "/api/v1/kiosk/config", tokens["k-door"][:42], None),
            ("GET", "/api/v1/audit", tokens["inspector"], None),
            ("GET", f"/api/v1/units/v-other?{window}", tokens["inspector"], None),
            ("POST", "/api/v1/entries", tokens["k-door"], {"entries": [{"kiosk_id": "k-far"}]}),
            ("POST", "/api/v1/heartbeat", tokens["k-door"], {"kiosk_id": "k-far"}),
            ("PUT", "/api/v1/trust-list", tokens["inspector"], {"keys": []}),
            ("PUT", "/api/v1/policy/general", tokens["admin"], {"policy_version": 1}),
        ]
        for method, path, token, body in attempts:
            assert client.call(method, path, token, body)[0] >= 400
        form = urllib.parse.urlencode({"token": tokens["k-revoked"], "nonce": "n1"}).encode()
        assert client.call("POST", "/dashboard/sign-in", raw=form, headers=origin)[0] >= 400
        openapi = client.call("GET", "/api/v1/openapi.json")[2]
        metrics = client.call("GET", "/metrics")[2]
        for door_process in doors:
            assert door_process.stop() == 0
        door_errors = [d.stderr_text().encode() for d in doors]
    finally:
        for door_process in doors:
            door_process.ensure_gone()
        collector.stop()

    logs = {
        "collector": b"".join(collector.output),
        "admin (stderr)": "".join(admin_err).encode(),
        "door": b"".join(doors[0].raw) + door_errors[0],
        "door with a revoked token": b"".join(doors[1].raw) + door_errors[1],
        "answers": b"\n".join(client.answers),
        "door status pages": b"\n".join(status_pages),
        "openapi": openapi,
        "metrics": metrics,
    }
    assert logs["collector"] and logs["door"] and logs["door with a revoked token"]
    key_bytes = base64.urlsafe_b64decode(pseudonym_key + "=")
    secrets = {name: value.encode() for name, value in tokens.items()}
    secrets["pseudonym key"] = pseudonym_key.encode()
    secrets["pseudonym key (hex)"] = key_bytes.hex().encode()
    secrets["pseudonym key (base64)"] = base64.b64encode(key_bytes).rstrip(b"=")
    leaks = [(secret, where) for secret, value in secrets.items()
             for where, text in logs.items() if value in text]
    assert leaks == []
    for where in ("collector", "door", "door with a revoked token"):
        assert b"Bearer " not in logs[where], where
    record_figures("security-secrets", {
        "secrets_searched": len(secrets),
        "bytes_of_logs_and_answers": sum(len(text) for text in logs.values()),
        "answers": len(client.answers),
    })
