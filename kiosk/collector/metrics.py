"""Prometheus metrics of one collector app, on a registry of its own (never the global one, so
several apps in one process, as in tests, do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

BATCH_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.entries_ingested = Counter(
            "kiosk_collector_entries_ingested", "New entries stored", registry=registry
        )
        self.entry_duplicates = Counter(
            "kiosk_collector_entry_duplicates",
            "Entries received again whose id was already held (no change)",
            registry=registry,
        )
        self.batches = Counter(
            "kiosk_collector_batches",
            "Entry batches by outcome (accepted, invalid, forbidden, too_large, foreign_id)",
            ["outcome"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "kiosk_collector_batch_seconds",
            "Time from a batch's body being read to its commit",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=registry,
        )
        self.chain_links = Counter(
            "kiosk_collector_chain_links",
            "Chain links checked at ingest by result (broken links are findings, not errors)",
            ["result"],
            registry=registry,
        )
        self.heartbeats = Counter(
            "kiosk_collector_heartbeats", "Heartbeats recorded", registry=registry
        )
        self.auth_failures = Counter(
            "kiosk_collector_auth_failures",
            "Refused requests by reason (missing, malformed, unknown, role, scope)",
            ["reason"],
            registry=registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
