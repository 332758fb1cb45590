"""`kiosk inspect` against a real collector on 127.0.0.1: the non-compliant list as a table, JSON
and CSV, closing and reopening a unit, and every failure as one line with exit status 2."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from kiosk.cli import main
from kiosk.collector.scenario import Seeded
from kiosk.commands.inspect import parse_time_option
from tests.test_inspectors_api import Running, inspector, start
from tests.test_inspectors_api import running as running  # the collector fixture

WINDOW = ["--since", "2022-03-05T10:00:00Z", "--until", "2022-03-05T12:00:00Z"]


def url(running: Running) -> str:
    return str(running.client.make_url("")).rstrip("/")


def token_file(tmp_path: Path, seeded: Seeded, name: str) -> str:
    path = tmp_path / f"{name}.token"
    path.write_text(seeded.tokens[name] + "\n")
    return str(path)


async def run(*argv: str) -> int:
    # The CLI is synchronous; the collector answers on this test's loop meanwhile.
    return await asyncio.to_thread(main, list(argv))


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The CLI is a client of the API: one database is enough (the API runs on both)."""
    return f"sqlite:///{tmp_path}/collector.db"


async def test_noncompliant_as_table_json_and_csv(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario, seeded = await start(running, "ordering")
    common = [
        "--collector",
        url(running),
        "--token-file",
        token_file(tmp_path, seeded, inspector(scenario)),
        *WINDOW,
    ]
    assert await run("inspect", "noncompliant", *common) == 0
    table = capsys.readouterr().out
    assert table.startswith("3 non-compliant unit(s) from 2022-03-05T10:00:00.000Z")
    assert table.index("v-c-two") < table.index("v-b-mixed") < table.index("v-a-skew")
    assert "Staff let people in whom the rule had denied" in table
    assert "Kiosk clock off by more than 2 minutes" in table

    assert await run("inspect", "noncompliant", *common, "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert [u["venue_id"] for u in answer["units"]] == ["v-c-two", "v-b-mixed", "v-a-skew"]

    assert await run("inspect", "noncompliant", *common, "--csv", "--region", "harbin") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("venue_id,name,region,status")
    assert len(lines) == 5


async def test_close_and_reopen(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario, seeded = await start(running, "override_entries")
    who = inspector(scenario)
    common = ["--collector", url(running), "--token-file", token_file(tmp_path, seeded, who)]
    assert await run("inspect", "close", "v-override", "--note", "overrides", *common) == 0
    assert capsys.readouterr().out.strip() == (
        f"v-override: closed (set by {who} at 2022-03-05T12:00:00.000Z)"
    )
    assert await run("inspect", "noncompliant", *common, *WINDOW) == 0
    assert f"CLOSED by {who}" in capsys.readouterr().out
    assert await run("inspect", "reopen", "v-override", "--note", "retrained", *common) == 0
    assert capsys.readouterr().out.startswith("v-override: open")


async def test_failures_are_one_line_and_exit_2(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario, seeded = await start(running, "region_scope")
    token = token_file(tmp_path, seeded, inspector(scenario))  # harbin/d1
    here = url(running)
    cases = {
        "outside": (
            [
                "inspect",
                "noncompliant",
                "--collector",
                here,
                "--token-file",
                token,
                "--region",
                "harbin/d10",
            ],
            "the collector answered 403: forbidden",
        ),
        "unknown venue": (
            [
                "inspect",
                "close",
                "nowhere",
                "--note",
                "x",
                "--collector",
                here,
                "--token-file",
                token,
            ],
            "the collector answered 404",
        ),
        "kiosk token": (
            [
                "inspect",
                "noncompliant",
                "--collector",
                here,
                "--token-file",
                token_file(tmp_path, seeded, "k-d1"),
            ],
            "answered 403",
        ),
        "revoked or wrong": (
            [
                "inspect",
                "noncompliant",
                "--collector",
                here,
                "--token-file",
                str(_write(tmp_path / "wrong", "A" * 43)),
            ],
            "answered 401",
        ),
        "no file": (
            [
                "inspect",
                "noncompliant",
                "--collector",
                here,
                "--token-file",
                str(tmp_path / "missing"),
            ],
            "no such file",
        ),
        "unreachable": (
            ["inspect", "noncompliant", "--collector", "http://127.0.0.1:9", "--token-file", token],
            "cannot reach the collector",
        ),
        "not a url": (
            ["inspect", "noncompliant", "--collector", "collector:8080", "--token-file", token],
            "give a URL",
        ),
        "long note": (
            [
                "inspect",
                "close",
                "v-d1",
                "--note",
                "x" * 501,
                "--collector",
                here,
                "--token-file",
                token,
            ],
            "at most 500 characters",
        ),
        "bad time": (
            [
                "inspect",
                "noncompliant",
                "--collector",
                here,
                "--token-file",
                token,
                "--since",
                "monday",
            ],
            "--since 'monday'",
        ),
    }
    for name, (argv, expected) in cases.items():
        assert await run(*argv) == 2, name
        captured = capsys.readouterr()
        assert captured.out == "", name
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kiosk: "), (name, captured.err)
        assert expected in lines[0], (name, lines[0])


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_times_ago_and_exact() -> None:
    now = 1_646_481_600.0  # 2022-03-05T12:00:00Z
    assert parse_time_option("6h", "--since", now) == "2022-03-05T06:00:00.000Z"
    assert parse_time_option("90m", "--since", now) == "2022-03-05T10:30:00.000Z"
    assert parse_time_option("7d", "--since", now) == "2022-02-26T12:00:00.000Z"
    assert parse_time_option("2022-03-05T08:00:00Z", "--since", now) == "2022-03-05T08:00:00Z"
