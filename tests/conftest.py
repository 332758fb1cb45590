"""Fixtures shared by the whole suite. Area-specific fixtures live in each test module."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

# The collector's fixtures (database_url over SQLite and PostgreSQL, storage, collector).
pytest_plugins = ["collector_helpers"]

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KIOSK_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` beside the clone (specs and public data sets); skips where a clone has none."""
    if not (SHARED / "spec").is_dir():
        pytest.skip(f"needs the shared specs and data at {SHARED} (not part of a user's clone)")
    return SHARED


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path) -> Path:
    data = shared_dir / "data"
    if not data.is_dir():
        pytest.skip(f"needs the public data sets at {data}")
    return data


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers run as subprocesses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The PostgreSQL server for tests (KIOSK_TEST_PG_URL, set by `make test` when one runs)."""
    url = os.environ.get("KIOSK_TEST_PG_URL")
    if not url:
        pytest.skip("no PostgreSQL: set KIOSK_TEST_PG_URL (make test does when one runs here)")
    return url
