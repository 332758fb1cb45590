"""The collector's pure parts: the fast canonical form against rfc8785, the ingest planner's
runs and links, region scope by whole segments, ETag matching, database URLs."""

from __future__ import annotations

import math
import pickle
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
import rfc8785
from collector_helpers import LogWriter
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.canonical import CanonicalizationError, canonical_bytes, entry_bytes
from kiosk.collector.batch import BatchRejected, prepare_batch
from kiosk.collector.config import parse_database_url, redact_url
from kiosk.collector.kiosk_config import etag_matches
from kiosk.collector.storage.base import (
    ENTRY_COLUMNS,
    LINK_BROKEN,
    LINK_OK,
    LINK_UNVERIFIED,
    EntryRow,
)
from kiosk.collector.storage.plan import Run, neighbour_keys, plan_ingest, run_ranges
from kiosk.collector.tokens import looks_like_token, new_token, region_covers, region_problem
from kiosk.wire import GENESIS_CHAIN

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def assert_same_as_rfc8785(encoded: Callable[[], bytes], value: Any) -> None:
    """`encoded()` gives rfc8785's bytes for `value`, or CanonicalizationError where it has none."""
    try:
        expected: bytes | None = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        expected = None
    if expected is None:
        with pytest.raises(CanonicalizationError):
            encoded()
    else:
        assert encoded() == expected


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_the_fast_canonical_form_is_rfc8785(value: Any) -> None:
    assert_same_as_rfc8785(lambda: canonical_bytes(value), value)


@pytest.mark.parametrize(
    "value", [37.0, -0.0, 36.6, 1e-7, 1e21, 123456789012345680.0, 0.1 + 0.2, 5e-324]
)
def test_numbers_at_the_edges_of_the_fast_path(value: float) -> None:
    assert canonical_bytes({"t": value}) == rfc8785.dumps({"t": value})
    assert math.isfinite(value)


free_text = st.text(max_size=12)
safe_text = st.text(alphabet="abcXYZ019._:-", min_size=1, max_size=8)
entries_as_sent = st.fixed_dictionaries(
    {
        "id": safe_text, "log_id": safe_text, "kiosk_id": safe_text, "venue_id": safe_text,
        "ts": safe_text, "chain": safe_text, "code_format": safe_text, "code_verdict": safe_text,
        "mask": safe_text, "decision": safe_text,
        "seq": st.integers(min_value=1, max_value=2**62),
        "clock_offset_ms": st.none() | st.integers(min_value=-(2**53), max_value=2**53),
        "code_status": st.none() | safe_text,
        "subject": st.none() | safe_text,
        "subject_key_version": st.none() | st.integers(min_value=0, max_value=2**31),
        "temperature_c": st.none()
        | st.integers(min_value=0, max_value=50)
        | st.floats(min_value=0, max_value=50).map(lambda c: round(c, 1)),
        "reasons": st.lists(safe_text, max_size=3),
        "override": st.none()
        | st.fixed_dictionaries({"by": free_text, "note": free_text, "entry_id": safe_text})
        | st.dictionaries(st.sampled_from(["by", "note", "x"]), free_text),
        "policy_version": free_text,
    },
    optional={"extra": json_values},
)


@settings(max_examples=400, deadline=None)
@given(entries_as_sent)
def test_an_entry_written_out_directly_is_rfc8785(entry: dict[str, Any]) -> None:
    """entry_bytes writes an entry of the spec's members by a template: the same bytes as
    rfc8785, for every member value the entry schema lets through (and members beyond it)."""
    without_chain = {key: value for key, value in entry.items() if key != "chain"}
    assert_same_as_rfc8785(lambda: entry_bytes(entry), without_chain)


def rows(entries: list[dict[str, Any]]) -> list[Any]:
    batch = prepare_batch(
        {"entries": entries}, kiosk_id="k-a", venue_id="v-a", received_at=0.0
    )
    return list(batch.rows)


def test_runs_merge_around_a_batch_and_links_use_run_heads() -> None:
    w = LogWriter("k-a", "v-a")
    log = w.entries(9)
    held = [Run(w.log_id, 1, 3, log[2]["chain"]), Run(w.log_id, 7, 9, log[8]["chain"])]
    new = rows(log[3:5])  # seq 4 and 5: 4 joins the first run, 5 is left before the gap at 6
    assert run_ranges(new) == {w.log_id: (3, 6)}
    assert neighbour_keys(new, {w.log_id: held}) == set()
    plan = plan_ingest(new, {w.log_id: held}, {})
    assert [n.link for n in plan.new] == [LINK_OK, LINK_OK]
    assert plan.runs_deleted == [held[0]]
    assert plan.runs_inserted == [Run(w.log_id, 1, 5, log[4]["chain"])]
    assert (plan.logs[0].held_added, plan.logs[0].runs_added, plan.logs[0].max_seq) == (2, 0, 5)
    # Seq 6 then closes the gap: one run, and 7's link needs 7 read back.
    last = rows([log[5]])
    runs = {w.log_id: [Run(w.log_id, 1, 5, log[4]["chain"]), held[1]]}
    assert neighbour_keys(last, runs) == {(w.log_id, 7)}
    plan = plan_ingest(last, runs, {})
    assert plan.runs_inserted == [Run(w.log_id, 1, 9, log[8]["chain"])]
    assert plan.logs[0].runs_added == -1


def test_a_batch_out_of_order_is_checked_within_itself() -> None:
    w = LogWriter("k-a", "v-a")
    log = w.entries(4)
    log[2] = {**log[2], "chain": "0" * 64}
    plan = plan_ingest(rows([log[3], log[1], log[0], log[2]]), {}, {})
    links = {n.row.seq: n.link for n in plan.new}
    assert links == {1: LINK_OK, 2: LINK_OK, 3: LINK_BROKEN, 4: LINK_BROKEN}
    seqs_only = plan_ingest(rows([log[3]]), {}, {})
    assert seqs_only.new[0].link == LINK_UNVERIFIED


def test_prepare_batch_refuses_with_the_first_problem() -> None:
    w = LogWriter("k-a", "v-a")
    entries = w.entries(3)
    with pytest.raises(BatchRejected) as caught:
        prepare_batch({"entries": [entries[0], {**entries[1], "kiosk_id": "k-b"}, {}]},
                      kiosk_id="k-a", venue_id="v-a", received_at=0)
    assert caught.value.status == 403
    with pytest.raises(BatchRejected) as caught:
        prepare_batch({"entries": [entries[0], {}, {**entries[2], "kiosk_id": "k-b"}]},
                      kiosk_id="k-a", venue_id="v-a", received_at=0)
    assert (caught.value.status, caught.value.index) == (400, 1)
    with pytest.raises(BatchRejected) as caught:
        prepare_batch({"entries": [{**entries[0], "big": 2**60}]}, kiosk_id="k-a",
                      venue_id="v-a", received_at=0)
    assert (caught.value.status, caught.value.index) == (400, 0)  # no RFC 8785 form


@pytest.mark.parametrize(
    ("scope", "region", "covered"),
    [
        ("city/d1", "city/d1", True),
        ("city/d1", "city/d1/x", True),
        ("city/d1", "city/d10", False),
        ("city/d1", "city", False),
        ("city", "city/d10/y", True),
        ("city/d_1", "city/dx1", False),
    ],
)
def test_region_scope_is_by_whole_segments(scope: str, region: str, covered: bool) -> None:
    assert region_covers(scope, region) is covered


def test_region_paths_and_tokens() -> None:
    assert region_problem("harbin/daowai") is None
    for bad in ("", "/harbin", "harbin/", "a//b", "Harbin", "a b", "a/../b", "x" * 201):
        assert region_problem(bad) is not None, bad
    token = new_token()
    assert looks_like_token(token) and len(token) == 43
    assert not looks_like_token(token + "=") and not looks_like_token(token[:-1] + "!")


def test_etag_matching() -> None:
    assert etag_matches('"a"', '"a"')
    assert etag_matches('W/"a"', '"a"')
    assert etag_matches('"b", "a"', '"a"')
    assert etag_matches("*", '"a"')
    assert not etag_matches('"b"', '"a"')
    assert not etag_matches(None, '"a"')


def test_database_urls() -> None:
    assert parse_database_url("sqlite:////var/lib/c.db").sqlite_path.as_posix() == "/var/lib/c.db"
    assert parse_database_url("postgresql://kiosk@db/kiosk").dialect == "postgresql"
    assert parse_database_url("postgres://kiosk@db/kiosk").dialect == "postgresql"
    for bad in ("sqlite:///relative.db", "sqlite://x.db", "sqlite:////var/lib/", "mysql://a/b",
                "postgresql://db", ""):
        with pytest.raises(ValueError):
            parse_database_url(bad)
    assert redact_url("postgresql://u:pw@db:5432/k") == "postgresql://u:***@db:5432/k"


def _keys(model: type[Any], prefix: str = "") -> list[str]:
    from pydantic import BaseModel

    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_the_example_configuration_documents_every_setting() -> None:
    import re
    from pathlib import Path

    from kiosk.collector.config import CollectorConfig, load_collector_config

    path = Path(__file__).resolve().parents[1] / "config" / "collector.toml"
    load_collector_config(path)
    text = path.read_text(encoding="utf-8")
    for key in _keys(CollectorConfig):
        section, name = key.split(".")
        assert f"[{section}]" in text, key
        assert re.search(rf"^#? ?{name} = ", text, re.MULTILINE), f"{key} is not documented"


def test_the_systemd_units_are_hardened_and_the_template_takes_its_port() -> None:
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "systemd"
    single = (folder / "kiosk-collector.service").read_text(encoding="utf-8")
    template = (folder / "kiosk-collector@.service").read_text(encoding="utf-8")
    for unit in (single, template):
        for line in (
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "StateDirectory=kiosk-collector",
            "CapabilityBoundingSet=",
            "KillSignal=SIGTERM",
            "User=kiosk-collector",
        ):
            assert f"\n{line}\n" in unit, line
    assert "kiosk collector --config /etc/kiosk-collector/collector.toml --port %i" in template


def test_inspector_scope_is_checked_by_whole_segments() -> None:
    from aiohttp.test_utils import make_mocked_request

    from kiosk.collector.auth import AuthGate
    from kiosk.collector.errors import ApiError
    from kiosk.collector.metrics import Metrics
    from kiosk.collector.storage.base import Principal

    metrics = Metrics()
    gate = AuthGate(storage=None, metrics=metrics)  # type: ignore[arg-type]
    request = make_mocked_request("GET", "/api/v1/noncompliant")
    inspector = Principal("ana", "inspector", region="city/d1")
    gate.require_region(request, inspector, "city/d1/x")
    for outside in ("city/d10", "city", "other/d1"):
        with pytest.raises(ApiError) as caught:
            gate.require_region(request, inspector, outside)
        assert caught.value.status == 403
    gate.require_region(request, Principal("root", "admin"), "anything/at/all")
    assert metrics.auth_failures.labels("scope")._value.get() == 3


def test_a_row_gives_the_stored_columns_in_order_and_survives_a_worker() -> None:
    """stored_values follows ENTRY_COLUMNS, which both storages' INSERT and COPY name; a row
    pickled back from a batch-decoding worker is the same EntryRow."""
    (row,) = rows(LogWriter("k-a", "v-a").entries(1))
    received, flags, link = 5.5, 3, LINK_OK
    stored = dict(zip(ENTRY_COLUMNS, row.stored_values(received, flags, link), strict=True))
    expected = row._asdict() | {"received_at": received, "flags": flags, "link": link}
    assert stored == {column: expected[column] for column in ENTRY_COLUMNS}
    back = pickle.loads(pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(back) is EntryRow and back == row
    assert row.checked_previous == GENESIS_CHAIN  # seq 1 follows the genesis chain


times = st.floats(min_value=-62_135_596_800.0, max_value=253_402_300_799.0)  # years 1 to 9999


@settings(max_examples=500, deadline=None)
@given(times, st.floats(min_value=-599.999, max_value=599.999))
def test_allows_in_reach_of_code_reuse_are_in_the_next_buckets(t: float, apart: float) -> None:
    """SQLite's code_reuse judgement looks for an allow's neighbours (less than 600 s away) in
    its bucket of entries_allowed_bucket and the one either side: SQLite's own arithmetic puts
    every such neighbour there, for any time an entry may carry."""
    with sqlite3.connect(":memory:") as conn:
        low, high = conn.execute(
            "SELECT CAST(? AS INTEGER) / 600, CAST(? AS INTEGER) / 600", (t, t + apart)
        ).fetchone()
    conn.close()
    assert abs(high - low) <= 1
