"""A standalone kiosk's files in one folder: trust and revocation lists of a throwaway issuer, a
pseudonym key, an image folder for the camera, a state folder, and the configuration naming
them. The door's tests and benchmarks start real `kiosk run` processes on them; the demo's
kiosks are in collector mode instead, and borrow only `to_toml` for their configuration files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.demo.samples import SampleIssuer, new_sample_issuer, write_pseudonym_key

KIOSK_ID = "k-demo-1"
VENUE_ID = "demo-venue-1"


@dataclass
class StandaloneKit:
    folder: Path
    issuer: SampleIssuer
    trust_list: Path
    revocation_list: Path
    pseudonym_key_file: Path
    frames: Path
    state: Path

    def write_lists(self, *, updated: int | None = None) -> None:
        """(Re)write both lists, e.g. after new revoked samples were issued."""
        self.issuer.write_lists(
            self.folder, updated=int(time.time()) if updated is None else updated
        )

    def config(self, **sections: Mapping[str, Any]) -> dict[str, Any]:
        """A configuration over this kit; `sections` are merged in (one level of subsections)."""
        base: dict[str, Any] = {
            "kiosk": {
                "id": KIOSK_ID,
                "venue_id": VENUE_ID,
                "state_dir": str(self.state),
            },
            "camera": {"source": str(self.frames)},
            "thermometer": {"source": "http"},
            "mask": {"source": "http"},
            "local_api": {"host": "127.0.0.1", "port": 0},
            "standalone": {
                "pseudonym_key_file": str(self.pseudonym_key_file),
                "trust_list": str(self.trust_list),
                "revocation_list": str(self.revocation_list),
            },
        }
        for name, values in sections.items():
            merged = dict(base.get(name, {}))
            for key, value in values.items():
                if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
            base[name] = merged
        return base

    def write_config(self, path: Path | None = None, **sections: Mapping[str, Any]) -> Path:
        target = path or self.folder / "kiosk.toml"
        target.write_text(to_toml(self.config(**sections)), encoding="utf-8")
        return target


def make_kit(folder: Path, issuer: SampleIssuer | None = None) -> StandaloneKit:
    """Create the kit's files in `folder` (which must exist)."""
    kit = StandaloneKit(
        folder=folder,
        issuer=issuer or new_sample_issuer(),
        trust_list=folder / "trust-list.json",
        revocation_list=folder / "revocation-list.json",
        pseudonym_key_file=folder / "pseudonym-key",
        frames=folder / "frames",
        state=folder / "state",
    )
    kit.frames.mkdir(exist_ok=True)
    kit.write_lists()
    write_pseudonym_key(kit.pseudonym_key_file)
    return kit


def to_toml(config: Mapping[str, Any]) -> str:
    """TOML for a configuration of sections holding scalars and subsections of scalars."""
    lines: list[str] = []

    def section(name: str, values: Mapping[str, Any]) -> None:
        lines.append(f"[{name}]")
        nested = {k: v for k, v in values.items() if isinstance(v, Mapping)}
        for key, value in values.items():
            if key not in nested and value is not None:
                lines.append(f"{key} = {_scalar(value)}")
        lines.append("")
        for key, value in nested.items():
            section(f"{name}.{key}", value)

    for name, values in config.items():
        section(name, values)
    return "\n".join(lines)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_scalar(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
