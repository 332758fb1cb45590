"""Headless Chromium for the browser tests (the door screen, the inspectors' dashboard): Debian's
/usr/bin/chromium driven by Playwright, a fresh profile per test, page errors collected, and a
screenshot in tests/artifacts/ when a test fails. `make test` installs Chromium
(`bash scripts/system-deps.sh chromium`); without it the tests skip and say so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

if TYPE_CHECKING:
    from playwright.async_api import ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# For a test module: `pytestmark = needs_chromium`.
needs_chromium = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (make test installs it: "
        "bash scripts/system-deps.sh chromium)",
    ),
]


@asynccontextmanager
async def chromium_page(
    profile: Path,
    screenshot_name: str,
    *,
    viewport: dict[str, int] | None = None,
    extra_args: Sequence[str] = (),
    **context_options: Any,
) -> AsyncIterator[Any]:
    """A page of a new Chromium with its own profile folder. On the way out it fails when the
    page raised a script error, and on any failure it leaves
    tests/artifacts/<screenshot_name>.png."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_ARGS, *extra_args],
            viewport=cast("ViewportSize", viewport or {"width": 1280, "height": 800}),
            **context_options,
        )
        page = context.pages[0] if context.pages else await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            yield page
            assert errors == [], f"the page raised: {errors}"
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / f"{screenshot_name}.png"), full_page=True)
            raise
        finally:
            await context.close()
