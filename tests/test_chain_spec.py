"""The entry chain against sync-api.md: the spec's worked vectors, and entries written by the
real EntryLog whose chain this test computes on its own (hashlib and a canonical form written
here for these simple values), so a bug shared by kiosk.wire and rfc8785 cannot hide."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from kiosk.door.store import EntryDraft, EntryLog
from kiosk.wire import GENESIS_CHAIN, canonical_json, chain_link


def plain_canonical(value: Any) -> bytes:
    """RFC 8785 for what entries hold (ASCII keys, short strings, tenths, small integers):
    keys sorted, no spaces, UTF-8 as is, and integral numbers written without `.0`."""

    def integral(item: Any) -> Any:
        if isinstance(item, float) and item.is_integer():
            return int(item)
        if isinstance(item, dict):
            return {key: integral(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [integral(inner) for inner in item]
        return item

    text = json.dumps(integral(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def plain_chain(previous: str, entry: dict[str, Any]) -> str:
    body = {key: value for key, value in entry.items() if key != "chain"}
    return hashlib.sha256(previous.encode("ascii") + plain_canonical(body)).hexdigest()


def test_the_spec_vectors_verify(shared_dir: Path) -> None:
    vectors = json.loads((shared_dir / "spec" / "chain-vectors.json").read_text(encoding="utf-8"))
    previous = GENESIS_CHAIN
    assert vectors["entries"], "the vector file holds a worked log"
    for case in vectors["entries"]:
        entry = case["entry"]
        without_chain = {key: value for key, value in entry.items() if key != "chain"}
        assert case["prev"] == previous
        assert canonical_json(without_chain).decode("utf-8") == case["canonical_without_chain"]
        assert plain_canonical(without_chain).decode("utf-8") == case["canonical_without_chain"]
        assert chain_link(previous, entry) == entry["chain"]
        assert plain_chain(previous, entry) == entry["chain"]
        previous = entry["chain"]


async def test_entries_written_by_the_log_chain_as_the_spec_says(tmp_path: Path) -> None:
    path = tmp_path / "entries.db"
    log = await EntryLog.open(path, kiosk_id="k-daowai-0007-a", venue_id="daowai-0007")
    fever = EntryDraft(
        ts=1646500012.0,
        code_format="vhc1",
        code_verdict="valid",
        code_status="green",
        subject="b" * 64,
        subject_key_version=1,
        temperature_c=38.4,
        mask="on",
        decision="deny",
        reasons=("fever",),
        override=None,
        policy_version="2022-03-05.1",
        clock_offset_ms=-120,
    )
    written = [
        await log.append(
            replace(
                fever,
                ts=1646500000.123,
                temperature_c=37.0,
                reasons=(),
                decision="allow",
                subject="a" * 64,
            )
        ),
        await log.append(fever),
        await log.append(
            replace(
                fever,
                code_format="none",
                code_verdict="none",
                code_status=None,
                subject=None,
                subject_key_version=None,
                temperature_c=36.6,
                reasons=("code_missing", "mask_unchecked"),
                mask="unchecked",
                clock_offset_ms=None,
            )
        ),
    ]
    written.append(
        await log.append(
            replace(
                fever,
                ts=1646500030.5,
                decision="allow",
                override={"by": "值班员-07", "note": "复测 37.1 °C", "entry_id": written[1]["id"]},
            )
        )
    )
    bodies = {entry_id: await log.get_body(entry_id) for entry_id in (e["id"] for e in written)}
    await log.close()

    assert written[0]["temperature_c"] == 37.0
    assert b'"temperature_c":37,' in plain_canonical(written[0])
    assert written[2]["subject"] is None and written[3]["override"] is not None
    previous = GENESIS_CHAIN
    for seq, entry in enumerate(written, start=1):
        assert entry["seq"] == seq
        assert entry["chain"] == plain_chain(previous, entry)
        # What the log keeps (and sends) is byte for byte the form the chain covers.
        body = bodies[entry["id"]]
        assert body is not None
        assert body.encode("utf-8") == plain_canonical(entry)
        assert plain_chain(previous, json.loads(body)) == entry["chain"]
        previous = entry["chain"]
