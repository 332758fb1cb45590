"""Fuzz the configuration loaders (issue 8, "Bad input"): `load_collector_config` and
`load_kiosk_config` over arbitrary TOML-ish text and over structured mutations of the documented
example configurations (config/collector.toml, config/kiosk.toml): a key's value replaced by any
TOML value, a key dropped or added, a section replaced. Always a configuration or a ConfigError
with a message, never another exception.

A few seconds each here; `python bench/fuzz.py` runs the same targets for long.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from pydantic import BaseModel
from test_fuzz_support import Target, record_figures, run_target, short_examples

from kiosk.collector.config import load_collector_config
from kiosk.door.config import load_kiosk_config
from kiosk.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "collector": (REPO / "config" / "collector.toml", load_collector_config),
    "kiosk": (REPO / "config" / "kiosk.toml", load_kiosk_config),
}

# -- writing TOML -----------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (a lone surrogate makes it invalid TOML)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def to_toml(document: dict[str, Any]) -> str:
    lines = []
    for key, value in document.items():
        if not isinstance(value, dict):
            lines.append(f"{json.dumps(key)} = {toml_value(value)}")
    for key, value in document.items():
        if isinstance(value, dict):
            lines.append(f"[{json.dumps(key)}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


# -- inputs ---------------------------------------------------------------------------------------

toml_scalars: st.SearchStrategy[Any] = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(["", "0", "-1", "1e9", "10s", "500ms", "15m", "24h", "7d", "-5s", "1e400s",
                     "nan", "${HOME}/x", "${", "$", "~", "/", "/dev/null", "sqlite:///",
                     "sqlite:////tmp/x.db", "postgresql://u:p@h/", "postgresql://u:secret@h/db",
                     "http://", "https://[::1", "http://user:pw@10.0.0.1/", "rtsp://x", "\x00"]),
    st.datetimes(),
    st.dates(),
    st.times(),
)
toml_values: st.SearchStrategy[Any] = st.recursive(
    toml_scalars,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated_example(draw: st.DrawFn, example: Path) -> str:
    document: dict[str, Any] = tomllib.loads(example.read_text(encoding="utf-8"))
    for _ in range(draw(st.integers(1, 3))):
        sections = sorted(document)
        section = draw(st.sampled_from(sections))
        table = document[section]
        how = draw(st.sampled_from(["value", "value", "value", "drop", "add", "section"]))
        if how == "section":
            document[section] = draw(toml_values)
        elif not isinstance(table, dict) or not table:
            document[section] = {}
        elif how == "value":
            document[section][draw(st.sampled_from(sorted(table)))] = draw(toml_values)
        elif how == "drop":
            del document[section][draw(st.sampled_from(sorted(table)))]
        else:
            document[section][draw(st.text(max_size=10))] = draw(toml_values)
    return to_toml(document)


TOKENS = ["[server]", "[database]", "[kiosk]", "[camera]", "[collector]", "[standalone]",
          "[[x]]", "[a.b]", "port", "url", "id", "source", "=", "\n", " ", '"', "'", "'''",
          '"""', "#", "[", "]", "{", "}", ",", ".", "1", "-", "true", "inf", "nan",
          "1979-05-27T07:32:00Z", "\\", "\\u0000", "\t", "\r\n", "0x1F", "1_000"]


def toml_ish_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(st.sampled_from(TOKENS), max_size=40).map("".join),
        st.text(max_size=200),
        st.integers(1, 3000).map(lambda depth: "a = " + "[" * depth + "]" * depth),
        st.integers(1, 3000).map(lambda depth: "a = " + "{b = " * depth + "1" + "}" * depth),
    )


class ConfigFiles:
    """Writes each input to one file in a folder of its own and loads it."""

    def __init__(self, load: Callable[[Path], BaseModel]) -> None:
        self.load = load
        self.path = Path(tempfile.mkdtemp(prefix="kiosk-fuzz-config-")) / "config.toml"

    def check(self, text: str | bytes) -> None:
        if isinstance(text, str):
            text = text.encode("utf-8", "surrogatepass")
        self.path.write_bytes(text)
        try:
            self.load(self.path)
        except ConfigError as exc:
            message = str(exc)
            assert message.startswith(str(self.path)), message
            assert "Traceback" not in message


def config_targets() -> list[Target]:
    targets = []
    for name, (example, load) in EXAMPLES.items():
        files = ConfigFiles(load)
        targets += [
            Target(f"{name}-config-text", toml_ish_text(), files.check, lambda data: data),
            Target(f"{name}-config-mutated", mutated_example(example), files.check,
                   lambda data: data),
        ]
    return targets


TARGETS = ["collector-config-text", "collector-config-mutated",
           "kiosk-config-text", "kiosk-config-mutated"]


def test_the_example_configurations_load() -> None:
    for example, load in EXAMPLES.values():
        load(example)


@pytest.mark.parametrize("name", TARGETS)
def test_fuzzed_configuration_is_loaded_or_a_config_error(name: str) -> None:
    target = next(t for t in config_targets() if t.name == name)
    started = time.monotonic()
    tried = run_target(target, short_examples(120))
    record_figures("fuzz", {"inputs": tried, "engine": "hypothesis",
                            "seconds": round(time.monotonic() - started, 2)}, target=name)
    assert tried >= 50
