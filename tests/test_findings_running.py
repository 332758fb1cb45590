"""The running reading totals kept for thermometer_fault (migrations sqlite 0006 / postgres
0005) stay equal to the hourly rollups summed up to each hour, through the real ingest, when
batches arrive out of order (an old backlog after newer hours), on both databases."""

from __future__ import annotations

import random
from typing import Any

from kiosk.collector.scenario import Scenario, expand, seed
from kiosk.collector.storage.base import Storage
from kiosk.wire import parse_rfc3339

T0 = parse_rfc3339("2022-03-05T06:00:00Z")


def scenario() -> Scenario:
    rng = random.Random(7)
    entries = []
    for n in range(120):
        ts = T0 + rng.uniform(0, 6 * 3600)
        entries.append(
            {
                "id": f"e{n}",
                "kiosk": rng.choice(["k-1", "k-2"]),
                "ts": ts,
                # Half arrive hours late, so earlier hours change after later ones exist.
                "received_at": ts + rng.choice([1.0, 1.0, 3 * 3600.0, 5 * 3600.0]),
                "temperature_c": rng.choice([None, 33.0, 36.2, 36.6, 37.0, 43.1]),
                "decision": "deny" if rng.random() < 0.2 else "allow",
            }
        )
    return Scenario.model_validate(
        {
            "now": T0 + 12 * 3600,
            "venues": [{"venue_id": "v-1", "region": "harbin/d1"}],
            "kiosks": [
                {"kiosk_id": k, "venue_id": "v-1", "provisioned_at": T0 - 3600}
                for k in ("k-1", "k-2")
            ],
            "entries": entries,
        }
    )


async def rows(storage: Storage, sql: str) -> list[tuple[Any, ...]]:
    if storage.dialect == "sqlite":
        return await storage.read(lambda conn: conn.execute(sql).fetchall())  # type: ignore[attr-defined,no-any-return]
    return [tuple(row) for row in await storage.fetch(sql)]  # type: ignore[attr-defined]


async def test_running_totals_follow_the_rollups(storage: Storage) -> None:
    city = scenario()
    steps = [step for step in expand(city).steps if step.kind == "entries"]
    assert len({step.at for step in steps}) > 10  # many separate batches, in receive order
    await seed(storage, city)
    hours = await rows(
        storage,
        "SELECT kiosk_id, hour, readings, readings_sum_dc, readings_sumsq_dc, implausible "
        "FROM kiosk_hours WHERE readings > 0 ORDER BY kiosk_id, hour",
    )
    running = await rows(
        storage,
        "SELECT kiosk_id, hour, readings, sum_dc, sumsq_dc, implausible FROM readings_running "
        "ORDER BY kiosk_id, hour",
    )
    expected = []
    totals: dict[str, list[int]] = {}
    for kiosk_id, hour, *values in hours:
        so_far = totals.setdefault(kiosk_id, [0, 0, 0, 0])
        for index, value in enumerate(values):
            so_far[index] += int(value)
        expected.append((kiosk_id, float(hour), *so_far))
    assert [(k, float(h), *map(int, v)) for k, h, *v in running] == expected
    assert sum(t[0] for t in totals.values()) == sum(
        1 for e in city.entries if e.temperature_c is not None
    )
