"""`kiosk config check FILE` and the start-up refusal of `kiosk run`: every problem, one line
each with its key path and value; exit 0 only when the kiosk could start."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from kiosk.cli import main
from kiosk.demo.samples import new_sample_issuer, write_pseudonym_key
from kiosk.door.config import KioskConfig, load_kiosk_config

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "kiosk.toml"


def write_kit(folder: Path) -> None:
    """The files a standalone kiosk's configuration names."""
    issuer = new_sample_issuer()
    issuer.write_lists(folder, updated=1_700_000_000)
    write_pseudonym_key(folder / "pseudonym-key")
    (folder / "frames").mkdir()
    (folder / "frames" / "0001.png").write_bytes(b"not looked at by the check")


GOOD = """
[kiosk]
id = "k-1"
venue_id = "v-1"
state_dir = "state"
pairing_window = "2s"
[camera]
source = "frames"
[standalone]
pseudonym_key_file = "pseudonym-key"
trust_list = "trust-list.json"
revocation_list = "revocation-list.json"
"""


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["config", "check", str(path)])
    return code, capsys.readouterr().out.splitlines()


def test_a_good_configuration_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_kit(tmp_path)
    (tmp_path / "kiosk.toml").write_text(GOOD)
    code, lines = check(tmp_path / "kiosk.toml", capsys)
    assert (code, lines) == (0, [f"{tmp_path / 'kiosk.toml'}: ok"])


def test_every_schema_problem_is_listed_with_key_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_kit(tmp_path)
    bad = GOOD.replace('pairing_window = "2s"', 'pairing_window = "soon"\nretention = 5').replace(
        "[camera]", '[local_api]\nhost = "0.0.0.0"\n[camera]'
    )
    (tmp_path / "kiosk.toml").write_text(bad)
    code, lines = check(tmp_path / "kiosk.toml", capsys)
    assert code == 2
    text = "\n".join(lines)
    assert "kiosk.pairing_window = 'soon': not a duration" in text
    assert "kiosk.retention: unknown key" in text
    assert "local_api.device_token" in text and "'0.0.0.0'" in text
    assert lines[-1].endswith("3 problem(s); kiosk run would refuse to start")


def test_referenced_files_are_opened_and_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_kit(tmp_path)
    (tmp_path / "trust-list.json").write_text('{"keys": [{"kty": "RSA"}]}')
    (tmp_path / "pseudonym-key").write_text("too-short\n")
    (tmp_path / "revocation-list.json").unlink()
    (tmp_path / "frames" / "0001.png").unlink()
    (tmp_path / "kiosk.toml").write_text(GOOD)
    code, lines = check(tmp_path / "kiosk.toml", capsys)
    assert code == 2
    problems = {line.split(": ", 1)[1].split(" = ")[0] for line in lines[:-1]}
    assert problems == {
        "standalone.revocation_list",
        "standalone.trust_list",
        "standalone.pseudonym_key_file",
        "camera.source",
    }
    key_line = next(line for line in lines if "pseudonym_key_file" in line)
    assert "base64url" in key_line and "too-short" not in key_line  # never echo a key


def test_credentials_directory_is_expanded_or_noted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_kit(tmp_path)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (tmp_path / "pseudonym-key").rename(credentials / "pseudonym-key")
    text = GOOD.replace(
        'pseudonym_key_file = "pseudonym-key"',
        'pseudonym_key_file = "${CREDENTIALS_DIRECTORY}/pseudonym-key"',
    )
    (tmp_path / "kiosk.toml").write_text(text)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    code, lines = check(tmp_path / "kiosk.toml", capsys)
    assert code == 0
    assert any("note:" in line and "$CREDENTIALS_DIRECTORY is not set" in line for line in lines)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    code, lines = check(tmp_path / "kiosk.toml", capsys)
    assert (code, lines[-1]) == (0, f"{tmp_path / 'kiosk.toml'}: ok")
    config = load_kiosk_config(tmp_path / "kiosk.toml")
    assert config.standalone.pseudonym_key_file == credentials / "pseudonym-key"


def test_run_refuses_to_start_half_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_kit(tmp_path)
    (tmp_path / "trust-list.json").unlink()
    (tmp_path / "kiosk.toml").write_text(GOOD)
    assert main(["run", "--config", str(tmp_path / "kiosk.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kiosk: ") and "standalone.trust_list" in err
    assert "Traceback" not in err
    assert not (tmp_path / "state").exists(), "nothing was opened"


def test_an_unreadable_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kiosk.toml").write_text("[kiosk\nid=")
    code, lines = check(tmp_path / "kiosk.toml", capsys)
    assert code == 2 and "not valid TOML" in lines[0]
    code, lines = check(tmp_path / "missing.toml", capsys)
    assert code == 2 and "no such configuration file" in lines[0]


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_the_example_configuration_is_valid_and_documents_every_key() -> None:
    config = load_kiosk_config(EXAMPLE)
    assert config.standalone_mode
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = [
        key
        for key in _keys(KioskConfig)
        if not re.search(rf"^#?\s*{re.escape(key.rsplit('.', 1)[-1])}\s*=", text, re.M)
    ]
    assert missing == []
