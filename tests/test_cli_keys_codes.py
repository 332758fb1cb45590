"""`kiosk keys new` and `kiosk codes issue`, run as a user would: results alone on stdout, one
`kiosk: ...` line on stderr and exit status 2 for bad input."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import cv2
import pytest
import zxingcpp

from kiosk.cli import main
from kiosk.codes import RevocationList, load_trust_list, verify
from kiosk.model import Claims, Status, Verdict

NOW = 1_700_000_000


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Runs a command that must fail as a usage error; returns its one-line message."""
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kiosk: "), err
    return lines[0]


@pytest.fixture
def keydir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out_dir = tmp_path / "keys"
    code, out, err = run(
        capsys, "keys", "new", "--issuer", "hlj-health", "--kid", "k1", "--out", str(out_dir)
    )
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"private key: {out_dir / 'k1.key.pem'}",
        f"key info:    {out_dir / 'k1.key.json'}",
        f"trust list:  {out_dir / 'trust.json'}",
    ]
    return out_dir


def issued_claims(keydir: Path, text: str, now: int = NOW) -> Claims:
    result = verify(text, load_trust_list(keydir / "trust.json"), RevocationList(), now)
    assert result.verdict is Verdict.VALID
    assert result.claims is not None
    return result.claims


def test_keys_new_writes_a_private_key_and_its_trust_list(keydir: Path) -> None:
    mode = stat.S_IMODE(os.stat(keydir / "k1.key.pem").st_mode)
    assert mode & 0o077 == 0 and mode & 0o600 == 0o600
    trust = load_trust_list(keydir / "trust.json")
    key = trust.get("k1")
    assert key is not None and key.iss == "hlj-health"


def test_keys_new_refuses_to_overwrite_and_bad_names(
    keydir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (keydir / "k1.key.pem").read_bytes()
    message = refused(capsys, "keys", "new", "--issuer", "x", "--kid", "k1", "--out", str(keydir))
    assert "already exists; refusing to overwrite" in message
    assert (keydir / "k1.key.pem").read_bytes() == before
    assert "--kid '../k'" in refused(
        capsys, "keys", "new", "--issuer", "x", "--kid", "../k", "--out", str(keydir)
    )
    assert "--issuer" in refused(
        capsys, "keys", "new", "--issuer", "i" * 65, "--kid", "k2", "--out", str(keydir)
    )


def test_codes_issue_prints_only_the_code(keydir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "codes", "issue", "--key", str(keydir / "k1.key.pem"), "--sub", "Q2hhbmdlTWVQbGVhc2U",
        "--status", "yellow", "--ttl", "90m", "--nat", "2023-11-14T08:00:00+08:00",
        "--travel", "--now", str(NOW),
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.endswith("\n") and out.count("\n") == 1 and out.startswith("VHC1:")
    nat = int(datetime(2023, 11, 14, 0, 0, tzinfo=UTC).timestamp())
    assert issued_claims(keydir, out.strip()) == Claims(
        "hlj-health", "Q2hhbmdlTWVQbGVhc2U", Status.YELLOW, NOW, NOW + 5400, nat, True
    )


@pytest.mark.parametrize(
    ("extra", "ttl", "nat", "trv"),
    [
        ([], 86_400, None, None),
        (["--ttl", "7d", "--no-travel"], 604_800, None, False),
        (["--ttl", "24h", "--nat", "1699990000"], 86_400, 1699990000, None),
        (["--ttl", "30s", "--nat", "2023-11-14T00:00:00Z"], 30, 1699920000, None),
    ],
)
def test_codes_issue_options(
    keydir: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    ttl: int,
    nat: int | None,
    trv: bool | None,
) -> None:
    key = str(keydir / "k1.key.pem")
    code, out, _ = run(
        capsys, "codes", "issue", "--key", key, "--status", "red", "--now", str(NOW), *extra
    )
    assert code == 0
    claims = issued_claims(keydir, out.strip())
    assert (claims.sta, claims.exp - claims.iat, claims.nat, claims.trv) == (
        Status.RED,
        ttl,
        nat,
        trv,
    )


def test_a_random_sub_is_told_on_stderr(keydir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = str(keydir / "k1.key.pem")
    code, out, err = run(capsys, "codes", "issue", "--key", key, "--status", "green")
    assert code == 0
    claims = issued_claims(keydir, out.strip(), now=int(datetime.now(UTC).timestamp()))
    assert len(claims.sub) >= 16
    assert err == f"sub: {claims.sub} (random)\n"
    code, out, err = run(capsys, "codes", "issue", "--key", key, "--status", "green", "--sub", "ab")
    assert code == 0 and "warning: --sub has 2 characters" in err
    assert out.startswith("VHC1:") and out.count("\n") == 1


def test_codes_issue_writes_a_readable_qr_image(
    keydir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "code.png"
    key = str(keydir / "k1.key.pem")
    code, out, _ = run(
        capsys, "codes", "issue", "--key", key, "--status", "green", "--sub", "abc_DEF-123",
        "--png", str(png),
    )  # fmt: skip
    assert code == 0
    image = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    assert image is not None
    assert [r.text for r in zxingcpp.read_barcodes(image)] == [out.strip()]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--ttl", "8d"], "--ttl 8d: must be more than 0 and at most 7d"),
        (["--ttl", "0m"], "--ttl 0m"),
        (["--ttl", "24"], "like 90m, 24h or 7d"),
        (["--ttl", "1w"], "like 90m, 24h or 7d"),
        (["--nat", "2023-11-14T08:00:00"], "say which time zone"),
        (["--nat", "yesterday"], "--nat 'yesterday': give Unix seconds or an ISO 8601 time"),
        (["--now", "1.5"], "--now '1.5'"),
        (["--sub", "a b"], "--sub 'a b': must be 1 to 64 characters"),
        (["--sub", "s" * 65], "--sub"),
        (["--issuer", ""], "--issuer ''"),
        (["--kid", ""], "--kid: must not be empty"),
    ],
)
def test_codes_issue_refuses_bad_input(
    keydir: Path, capsys: pytest.CaptureFixture[str], extra: list[str], problem: str
) -> None:
    key = str(keydir / "k1.key.pem")
    message = refused(capsys, "codes", "issue", "--key", key, "--status", "green", *extra)
    assert problem in message


def test_codes_issue_needs_to_know_kid_and_iss(
    keydir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    moved = keydir / "elsewhere.pem"
    (keydir / "k1.key.pem").rename(moved)
    message = refused(capsys, "codes", "issue", "--key", str(moved), "--status", "green")
    assert "elsewhere.json: not found" in message and "--kid and --issuer" in message
    code, out, _ = run(
        capsys, "codes", "issue", "--key", str(moved), "--status", "green", "--kid", "k1",
        "--issuer", "hlj-health", "--sub", "abcdefghijklmnop", "--now", str(NOW),
    )  # fmt: skip
    assert code == 0 and issued_claims(keydir, out.strip()).iss == "hlj-health"
    missing = refused(capsys, "codes", "issue", "--key", str(keydir / "no.pem"), "--status", "red")
    assert "key file not found" in missing


def test_a_key_for_another_issuer_is_not_trusted(
    keydir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "codes", "issue", "--key", str(keydir / "k1.key.pem"), "--status", "green",
        "--issuer", "bj-health", "--now", str(NOW),
    )  # fmt: skip
    assert code == 0
    result = verify(out.strip(), load_trust_list(keydir / "trust.json"), RevocationList(), NOW)
    assert result.verdict is Verdict.UNKNOWN_KEY


def test_without_an_action_the_help_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("keys", "codes"):
        code, out, err = run(capsys, command)
        assert (code, out) == (2, "") and "usage:" in err


def test_the_installed_command(tmp_path: Path) -> None:
    kiosk = Path(sys.executable).parent / "kiosk"
    if not kiosk.exists():
        pytest.skip(f"no console script at {kiosk} (install with pip install -e .)")

    def kiosk_run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(kiosk), *argv], capture_output=True, text=True, timeout=60, check=False
        )

    made = kiosk_run("keys", "new", "--issuer", "hlj-health", "--kid", "k1", "--out", str(tmp_path))
    assert made.returncode == 0 and made.stderr == "" and len(made.stdout.splitlines()) == 3
    key = str(tmp_path / "k1.key.pem")
    issued = kiosk_run("codes", "issue", "--key", key, "--status", "green", "--sub", "x" * 16,
                       "--now", str(NOW))  # fmt: skip
    assert issued.returncode == 0 and issued.stderr == ""
    assert issued.stdout.startswith("VHC1:") and issued.stdout.count("\n") == 1
    assert issued_claims(tmp_path, issued.stdout.strip()).sub == "x" * 16
    bad = kiosk_run("codes", "issue", "--key", key, "--status", "green", "--ttl", "9d")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr.startswith("kiosk: --ttl 9d") and bad.stderr.count("\n") == 1
