"""The inspectors' answers as CSV (`Accept: text/csv`), for spreadsheets and case files.

`noncompliant.csv`: one row per finding, with its unit's columns repeated. `unit.csv`: one row
per record of the unit page, its kind in the first column (`finding`, `entries`, `kiosk`,
`status`), the columns that do not apply left empty. Cells a spreadsheet would run as a formula
(starting with = + - @, tab or carriage return) get a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CSV_TYPE = "text/csv"
JSON_TYPE = "application/json"

NONCOMPLIANT_COLUMNS = (
    "venue_id",
    "name",
    "region",
    "status",
    "status_set_by",
    "status_set_at",
    "rule",
    "kind",
    "kiosk_id",
    "count",
    "first",
    "last",
    "sample_entry_ids",
)
UNIT_COLUMNS = (
    "record",
    "kiosk_id",
    "rule",
    "kind",
    "decision",
    "reason",
    "count",
    "first",
    "last",
    "sample_entry_ids",
    "status",
    "by",
    "at",
    "note",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def wants_csv(accept: str | None) -> bool:
    """Whether an Accept header prefers CSV to JSON (by q-value; JSON on a tie or none)."""
    if not accept:
        return False
    best: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.lower()
        best[media] = max(best.get(media, 0.0), quality)
    csv_q = best.get(CSV_TYPE, 0.0)
    json_q = max(best.get(JSON_TYPE, 0.0), best.get("application/*", 0.0), best.get("*/*", 0.0))
    return csv_q > 0 and csv_q > json_q


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        value = " ".join(str(item) for item in value)
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def _write(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return out.getvalue()


def noncompliant_csv(answer: Mapping[str, Any]) -> str:
    rows = []
    for unit in answer["units"]:
        for finding in unit["findings"]:
            rows.append({**unit, **finding})
    return _write(NONCOMPLIANT_COLUMNS, rows)


def unit_csv(answer: Mapping[str, Any]) -> str:
    rows: list[dict[str, Any]] = []
    for finding in answer["findings"]:
        rows.append({"record": "finding", **finding})
    counts = answer["entry_counts"]
    for decision in ("allow", "deny"):
        rows.append({"record": "entries", "decision": decision, "count": counts[decision]})
    for item in counts["by_reason"]:
        rows.append({"record": "entries", **item})
    for kiosk in answer["kiosks"]:
        rows.append(
            {
                "record": "kiosk",
                "kiosk_id": kiosk["kiosk_id"],
                "first": kiosk["provisioned_at"],
                "last": kiosk["last_heartbeat_at"],
            }
        )
    for change in answer["status_history"]:
        rows.append({"record": "status", **change})
    return _write(UNIT_COLUMNS, rows)
