"""`kiosk check`: codes issued here, drawn into camera-like frames with OpenCV, read and verified.

Most runs call the CLI's `main` in-process (same parser, same exit codes); two run the installed
command as a subprocess to prove the exit status and the stdout/stderr split end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.cli import main
from kiosk.codes import RevocationList, TrustList
from kiosk.codes.issuing import IssuerKey, new_issuer_key, random_sub
from kiosk.demo.frames import camera_frame
from kiosk.model import Status

NOW = 1_717_000_000
ISS = "hlj-health"


@pytest.fixture(scope="module")
def issuer() -> IssuerKey:
    return new_issuer_key(kid="test-k1", iss=ISS)


@pytest.fixture
def trust_file(tmp_path: Path, issuer: IssuerKey) -> Path:
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(TrustList((issuer.trusted_key,)).to_jwks()))
    return path


def issue(issuer: IssuerKey, sub: str | None = None, **claims: object) -> str:
    fields: dict[str, object] = {
        "status": Status.GREEN,
        "iat": NOW - 600,
        "ttl_s": 86_400,
        "nat": NOW - 7200,
        "trv": False,
    }
    fields.update(claims)
    return issuer.issue(sub=sub or random_sub(), **fields)  # type: ignore[arg-type]


def run_check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["check", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def save(path: Path, image: np.ndarray, params: list[int] | None = None) -> Path:
    assert cv2.imwrite(str(path), image, params or [])
    return path


def rotated_jpeg(text: str, tmp: Path) -> Path:
    frame = camera_frame([text], angle_deg=15)
    return save(tmp / "rot15.jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 60])


def rotated_45(text: str, tmp: Path) -> Path:
    return save(tmp / "rot45.png", camera_frame([text], angle_deg=45, height_share=0.55))


def perspective(text: str, tmp: Path) -> Path:
    frame = camera_frame([text])
    height, width = frame.shape[:2]
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    moved = np.float32([[70, 30], [width - 20, 60], [width - 90, height - 20], [40, height - 55]])
    matrix = cv2.getPerspectiveTransform(corners, moved)
    warped = cv2.warpPerspective(frame, matrix, (width, height), borderValue=(128, 128, 128))
    return save(tmp / "perspective.png", warped)


def blurred(text: str, tmp: Path) -> Path:
    return save(tmp / "blur.png", cv2.GaussianBlur(camera_frame([text]), (0, 0), 1.2))


def low_contrast(text: str, tmp: Path) -> Path:
    frame = camera_frame([text]).astype(np.float32)
    faded = 128 + (frame - 128) * 0.35
    return save(tmp / "contrast35.png", np.clip(faded + 0.5, 0, 255).astype(np.uint8))


def dark_mode(text: str, tmp: Path) -> Path:
    return save(tmp / "inverted.png", np.bitwise_not(camera_frame([text])))


def small_frame(text: str, tmp: Path) -> Path:
    return save(tmp / "vga.png", camera_frame([text], size=(640, 480)))


def far_code(text: str, tmp: Path) -> Path:
    frame = camera_frame([text], size=(1920, 1080), module_px=3)
    return save(tmp / "far.png", frame)


VARIANTS: dict[str, Callable[[str, Path], Path]] = {
    "15° rotation, JPEG quality 60": rotated_jpeg,
    "45° rotation": rotated_45,
    "mild perspective warp": perspective,
    "Gaussian blur σ 1.2": blurred,
    "contrast reduced to 35%": low_contrast,
    "inverted colours": dark_mode,
    "640×480 frame": small_frame,
    "1920×1080, 3 px per module": far_code,
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_reads_and_verifies_a_code_in_a_camera_frame(
    variant: str,
    issuer: IssuerKey,
    trust_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sub = random_sub()
    image = VARIANTS[variant](issue(issuer, sub), tmp_path)
    code, lines, _ = run_check(
        capsys, "--image", str(image), "--trust", str(trust_file), "--now", str(NOW), "--json"
    )
    assert code == 0
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record == {
        "format": "vhc1",
        "verdict": "valid",
        "iss": ISS,
        "sub": sub,
        "sta": "green",
        "iat": NOW - 600,
        "exp": NOW - 600 + 86_400,
        "nat": NOW - 7200,
        "trv": False,
    }


def test_the_far_code_really_is_drawn_at_3_pixels_per_module(issuer: IssuerKey) -> None:
    text = issue(issuer)
    frame = camera_frame([text], size=(1920, 1080), module_px=3)
    dark_rows = np.flatnonzero((frame[:, :, 0] < 60).any(axis=1))
    # The symbol's height in pixels is 3 × its modules (a version 1–40 code: 21–177 modules).
    height = int(dark_rows[-1] - dark_rows[0] + 1)
    assert height % 3 == 0 and 21 <= height // 3 <= 177


def test_two_codes_in_one_frame_give_two_lines(
    issuer: IssuerKey, trust_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs = [random_sub(), random_sub()]
    frame = camera_frame([issue(issuer, subs[0]), issue(issuer, subs[1], status=Status.RED)])
    image = save(tmp_path / "two.png", frame)
    code, lines, _ = run_check(
        capsys, "--image", str(image), "--trust", str(trust_file), "--now", str(NOW), "--json"
    )
    assert code == 0
    records = [json.loads(line) for line in lines]
    assert [(r["sub"], r["sta"], r["verdict"]) for r in records] == [
        (subs[0], "green", "valid"),
        (subs[1], "red", "valid"),
    ]


def test_readable_lines_say_why(
    issuer: IssuerKey, trust_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sub = random_sub()
    text = issue(issuer, sub, ttl_s=3600, trv=True)
    code, lines, _ = run_check(capsys, text, "--trust", str(trust_file), "--now", str(NOW))
    assert code == 0 and len(lines) == 1
    line = lines[0]
    assert line.startswith("VALID vhc1 ")
    assert f"iss={ISS}" in line and f"sub={sub}" in line and "sta=green" in line
    assert "exp=2024-05-29T17:16:40Z" in line and "trv=yes" in line

    code, lines, _ = run_check(capsys, text, "--trust", str(trust_file), "--now", str(NOW + 3600))
    assert code == 0 and lines[0].startswith("EXPIRED vhc1 ") and "expiry" in lines[0]

    revoked = tmp_path / "revoked.json"
    revoked.write_text(json.dumps(RevocationList.of_holders([(ISS, sub)], updated=NOW).to_json()))
    code, lines, _ = run_check(
        capsys, text, "--trust", str(trust_file), "--revoked", str(revoked), "--now", str(NOW)
    )
    assert code == 0 and lines[0].startswith("REVOKED vhc1 ")

    code, lines, _ = run_check(capsys, "https://example.org/menu", "--trust", str(trust_file))
    assert code == 0
    assert lines == [
        'UNKNOWN_FORMAT unknown text="https://example.org/menu" '
        "(a QR code, but not a health code of any known format)"
    ]


def test_an_empty_trust_list_is_valid_and_trusts_no_one(
    issuer: IssuerKey, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text('{"keys": []}')
    sub = random_sub()
    code, lines, _ = run_check(capsys, issue(issuer, sub), "--trust", str(empty), "--json")
    assert code == 0
    record = json.loads(lines[0])
    # The claims could be read, so they are shown: the operator sees whose code it is.
    assert (record["format"], record["verdict"], record["sub"]) == ("vhc1", "unknown_key", sub)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image", "{tmp}/missing.png"], "missing.png: image not found"),
        (["--image", "{tmp}/notes.png"], "notes.png: not an image"),
        (["--image", "{tmp}"], "not a file"),
        (["VHC1:x", "--image", "{tmp}/code.png"], "give the code's TEXT or --image FILE"),
        ([], "give the code's TEXT or --image FILE"),
        (["VHC1:x", "--trust", "{tmp}/bad.json"], "bad.json"),
        (["VHC1:x", "--trust", "{tmp}/nowhere.json"], "nowhere.json: trust list not found"),
        (["VHC1:x", "--revoked", "{tmp}/bad.json"], "bad.json"),
        (["VHC1:x", "--now", "yesterday"], "--now 'yesterday'"),
    ],
)
def test_usage_and_configuration_errors_exit_2_with_one_line(
    args: list[str],
    message: str,
    trust_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "notes.png").write_text("this is not a picture")
    (tmp_path / "bad.json").write_text('{"keys": [{"kty": "RSA"}]')
    save(tmp_path / "code.png", camera_frame(["VHC1:x"]))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--trust" not in argv:
        argv += ["--trust", str(trust_file)]
    code, lines, err = run_check(capsys, *argv)
    assert code == 2
    assert lines == []
    assert err.count("\n") == 1 and err.startswith("kiosk: ") and message in err, err


def test_missing_trust_option_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = run_check(capsys, "VHC1:x")
    assert (code, lines) == (2, [])
    assert err == 'kiosk: check: --trust FILE is required (a JWKS; {"keys": []} trusts no one)\n'


def kiosk_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiosk", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_command_exits_3_when_the_image_holds_no_code(trust_file: Path, tmp_path: Path) -> None:
    image = save(tmp_path / "empty.jpg", camera_frame([], size=(1280, 720)))
    done = kiosk_command("check", "--image", str(image), "--trust", str(trust_file))
    assert done.returncode == 3
    assert done.stdout == ""
    assert done.stderr == f"kiosk: no readable QR code in {image}\n"


def test_command_prints_only_results_on_stdout(
    issuer: IssuerKey, trust_file: Path, tmp_path: Path
) -> None:
    sub = random_sub()
    image = save(tmp_path / "code.png", camera_frame([issue(issuer, sub)]))
    done = kiosk_command(
        "check", "--image", str(image), "--trust", str(trust_file), "--now", str(NOW), "--json"
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    (line,) = done.stdout.splitlines()
    assert json.loads(line)["sub"] == sub
