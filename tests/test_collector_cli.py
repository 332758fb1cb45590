"""`kiosk admin` and `kiosk collector` as a person runs them: tokens alone on stdout, one-line
errors with exit 2, revocation that takes effect at once, and real collector processes stopped
with SIGTERM by pid (two of them sharing one PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from collector_helpers import Collector, LogWriter

from kiosk.cli import main
from kiosk.collector.tokens import token_hash


def write_config(path: Path, database_url: str, port: int = 0, **server: Any) -> Path:
    lines = ["[server]", 'host = "127.0.0.1"', f"port = {port}"]
    lines += [f"{key} = {value!r}" for key, value in server.items()]
    lines += ["[database]", f'url = "{database_url}"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def admin(config: Path, *args: str) -> int:
    return main(["admin", "--config", str(config), *args])


def test_admin_provisions_and_prints_only_tokens(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "collector.toml", database_url)
    assert admin(config, "add-venue", "v-1", "--name", "Shop 1", "--region", "harbin/daowai") == 0
    out, err = capsys.readouterr()
    assert out == "" and "added venue v-1" in err
    assert admin(config, "add-kiosk", "k-1", "--venue", "v-1") == 0
    out, err = capsys.readouterr()
    token = out.removesuffix("\n")
    assert out == token + "\n" and len(token) == 43 and token not in err
    assert admin(config, "add-inspector", "ana", "--region", "harbin") == 0
    inspector = capsys.readouterr().out.strip()
    assert admin(config, "add-admin", "root") == 0
    assert len(capsys.readouterr().out.strip()) == 43
    assert admin(config, "rotate-token", "ana") == 0
    rotated = capsys.readouterr().out.strip()
    assert len(rotated) == 43 and rotated != inspector
    assert admin(config, "revoke-token", "k-1") == 0
    out, err = capsys.readouterr()
    assert out == "" and "revoked" in err
    if database_url.startswith("sqlite"):  # only hashes are stored
        stored = b"".join(p.read_bytes() for p in tmp_path.glob("collector.db*"))
        assert token.encode() not in stored and rotated.encode() not in stored
        assert token_hash(rotated).encode() in stored


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["add-venue", "v-1", "--name", "Again", "--region", "harbin"], "already exists"),
        (["add-kiosk", "k-1", "--venue", "v-1"], "already exists"),
        (["add-admin", "k-1"], "already exists"),
        (["add-kiosk", "k-2", "--venue", "v-9"], "no venue 'v-9'"),
        (["add-venue", "v-2", "--name", "X", "--region", "harbin//daowai"], "empty segment"),
        (["add-venue", "v-2", "--name", "X", "--region", "Harbin"], "may hold only"),
        (["add-venue", "v-2", "--name", "X", "--region", "h", "--type", "spa"], "no policy"),
        (["add-inspector", "bad name", "--region", "h"], "use 1 to 64"),
        (["revoke-token", "nobody"], "no kiosk, inspector or admin named 'nobody'"),
    ],
)
def test_admin_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    config = write_config(tmp_path / "collector.toml", f"sqlite:///{tmp_path}/c.db")
    assert admin(config, "add-venue", "v-1", "--name", "Shop", "--region", "harbin") == 0
    assert admin(config, "add-kiosk", "k-1", "--venue", "v-1") == 0
    capsys.readouterr()
    assert admin(config, *args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("kiosk: ") and says in err


def test_a_bad_configuration_names_key_value_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "collector.toml"
    path.write_text(
        '[server]\nport = "eighty"\nbogus = 1\n[database]\n'
        'url = "postgresql://kiosk:s3cret@db/"\n[findings]\nsilent_after = "soon"\n'
    )
    assert main(["collector", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "server.port = 'eighty'" in err
    assert "server.bogus: unknown key" in err
    assert "database.url" in err and "add the database name" in err and "s3cret" not in err
    assert "findings.silent_after = 'soon'" in err and "duration" in err
    assert "Traceback" not in err


async def test_revoking_with_the_cli_takes_effect_on_a_running_collector(
    collector: Collector, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "collector.toml", collector.config.database.url)
    p = collector.provisioned
    assert (await collector.client.get("/api/v1/kiosk/config", headers=p.auth("k-a"))).status == 200
    assert await asyncio.to_thread(admin, config, "revoke-token", "k-a") == 0
    refused = await collector.client.get("/api/v1/kiosk/config", headers=p.auth("k-a"))
    assert refused.status == 401


# -- the server as a process -------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [int(sock.getsockname()[1]) for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


async def wait_healthy(url: str, process: subprocess.Popen[bytes], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                async with session.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not become healthy")


def stop(process: subprocess.Popen[bytes]) -> tuple[float, str]:
    started = time.monotonic()
    os.kill(process.pid, signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError("the collector did not stop within 10 s of SIGTERM") from None
    return time.monotonic() - started, err.decode()


async def test_collector_processes_serve_and_stop_on_sigterm(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "collector.toml", database_url)
    await asyncio.to_thread(admin, config, "add-venue", "v-1", "--name", "S", "--region", "h")
    await asyncio.to_thread(admin, config, "add-kiosk", "k-1", "--venue", "v-1")
    token = capsys.readouterr().out.strip()
    # Several stateless processes on one PostgreSQL; one process per SQLite file.
    count = 1 if database_url.startswith("sqlite") else 2
    ports = free_ports(count)
    processes = [
        await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "kiosk", "collector", "--config", str(config),
             "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for port in ports
    ]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, process in zip(urls, processes, strict=True):
            await wait_healthy(url, process)
        batch = LogWriter("k-1", "v-1").entries(20)
        answers = []
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:
            for url in urls * 2:  # the same batch to every process, twice
                async with s.post(f"{url}/api/v1/entries", json={"entries": batch}) as r:
                    answers.append((r.status, await r.json()))
        assert answers[0] == (200, {"accepted": 20, "duplicates": 0})
        assert all(a == (200, {"accepted": 0, "duplicates": 20}) for a in answers[1:])
    finally:
        results = [
            await asyncio.to_thread(stop, process)
            for process in processes
            if process.poll() is None
        ]
    for elapsed, err in results:
        assert elapsed < 10
        assert "Traceback" not in err and "listening on http://127.0.0.1:" in err
    assert [process.returncode for process in processes] == [0] * count
