"""The inspectors' CSV: content negotiation and cells a spreadsheet must not run."""

from __future__ import annotations

import csv
import io

import pytest

from kiosk.collector.csv_export import noncompliant_csv, wants_csv


@pytest.mark.parametrize(
    ("accept", "csv_wanted"),
    [
        (None, False),
        ("", False),
        ("application/json", False),
        ("text/csv", True),
        ("TEXT/CSV; charset=utf-8", True),
        ("text/csv, application/json", False),  # a tie goes to JSON
        ("text/csv;q=0.9, application/json;q=0.5", True),
        ("application/json;q=0.9, text/csv", True),
        ("*/*", False),
        ("text/csv;q=0", False),
        ("text/csv;q=bogus", False),
    ],
)
def test_csv_when_preferred(accept: str | None, csv_wanted: bool) -> None:
    assert wants_csv(accept) is csv_wanted


def test_formulas_are_neutralised_and_ids_joined() -> None:
    answer = {
        "units": [
            {
                "venue_id": "v-1",
                "name": '=HYPERLINK("http://x")',
                "region": "harbin/d1",
                "status": "closed",
                "status_set_by": "@insp",
                "status_set_at": "2022-03-05T12:00:00.000Z",
                "findings": [
                    {
                        "rule": "override_entries",
                        "kind": "override",
                        "kiosk_id": "-k",
                        "count": 2,
                        "first": "2022-03-05T10:00:00.000Z",
                        "last": "2022-03-05T11:00:00.000Z",
                        "sample_entry_ids": ["a", "b"],
                    }
                ],
            }
        ]
    }
    rows = list(csv.DictReader(io.StringIO(noncompliant_csv(answer))))
    assert rows == [
        {
            "venue_id": "v-1",
            "name": '\'=HYPERLINK("http://x")',
            "region": "harbin/d1",
            "status": "closed",
            "status_set_by": "'@insp",
            "status_set_at": "2022-03-05T12:00:00.000Z",
            "rule": "override_entries",
            "kind": "override",
            "kiosk_id": "'-k",
            "count": "2",
            "first": "2022-03-05T10:00:00.000Z",
            "last": "2022-03-05T11:00:00.000Z",
            "sample_entry_ids": "a b",
        }
    ]
