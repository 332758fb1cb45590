"""The inspectors' dashboard in real headless Chromium, against the real collector on 127.0.0.1
seeded with a small city (tests/dashboard_city.py): sign in, see the misbehaving unit and not
the clean one, open it, download its CSV, close it (and its kiosk's configuration says so),
sign out; an inspector of another district sees neither unit; a wrong token is refused with a
clear message. A failing test leaves a screenshot in tests/artifacts/. With
KIOSK_DASHBOARD_SHOTS=1 a passing run leaves the pages it saw there too (dashboard-*.png), at
laptop and phone width, in Chinese and English, for a person to look at.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from browser import ARTIFACTS, chromium_page, needs_chromium
from dashboard_city import (
    BAD,
    BAD_KIOSK,
    DAOWAI_INSPECTOR,
    FAR,
    GOOD,
    NANGANG_INSPECTOR,
    NOW,
    city,
)

from kiosk.collector.app import build_app, server_settings
from kiosk.collector.config import CollectorConfig
from kiosk.collector.keys import STORAGE_KEY
from kiosk.collector.scenario import ManualClock, Seeded, seed

pytestmark = needs_chromium

PHONE = {"width": 375, "height": 812}
SHOTS = os.environ.get("KIOSK_DASHBOARD_SHOTS") == "1"


@dataclass
class RunningCollector:
    url: str
    seeded: Seeded


@pytest.fixture
async def collector_url(tmp_path: Path) -> AsyncIterator[RunningCollector]:
    """The collector app on a real port of 127.0.0.1, its clock at the city's `NOW`."""
    clock = ManualClock(NOW)
    config = CollectorConfig.model_validate(
        {"database": {"url": f"sqlite:///{tmp_path}/collector.db"}}
    )
    app = build_app(config, clock=clock)
    runner = web.AppRunner(app, handle_signals=False, **server_settings(config))
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        seeded = await seed(app[STORAGE_KEY], city())
        yield RunningCollector(f"http://127.0.0.1:{port}", seeded)
    finally:
        await runner.cleanup()


async def sign_in(page: Any, base: str, token: str) -> None:
    await page.goto(f"{base}/dashboard/")
    assert "/dashboard/sign-in" in page.url  # nothing is shown before signing in
    await page.fill("#token", token)
    await page.click("form[action$='/sign-in'] button[type=submit]")
    await page.wait_for_selector("[data-testid=unit-count]")


async def listed_units(page: Any) -> list[str]:
    return list(
        await page.eval_on_selector_all("article.unit", "els => els.map(e => e.dataset.venue)")
    )


async def shoot(page: Any, name: str) -> None:
    if not SHOTS:
        return  # ~0.4 s a page; the failure screenshot does not depend on it
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


async def kiosk_unit_status(base: str, token: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(
        f"{base}/api/v1/kiosk/config", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 200
        return str((await response.json())["unit_status"])


async def test_an_inspector_finds_closes_and_reopens_the_misbehaving_unit(
    collector_url: RunningCollector, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    base, tokens = collector_url.url, collector_url.seeded.tokens
    async with chromium_page(
        tmp_path / "profile", request.node.name, accept_downloads=True, locale="en-US"
    ) as page:
        await page.goto(f"{base}/dashboard/lang/en?next=/dashboard/")
        await sign_in(page, base, tokens[DAOWAI_INSPECTOR])
        # The token went into a form body once; it is in no URL and no cookie.
        assert tokens[DAOWAI_INSPECTOR] not in page.url
        cookies = await page.context.cookies()
        assert all(tokens[DAOWAI_INSPECTOR] not in c["value"] for c in cookies)
        session = next(c for c in cookies if c["name"] == "kiosk_session")
        assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/"

        assert await listed_units(page) == [BAD]  # the clean library is not listed
        card = page.locator(f"article.unit[data-venue='{BAD}']")
        text = await card.inner_text()
        assert "Staff let people in whom the rule had denied" in text
        assert "Thermometer stuck, implausible or reported faulty" in text
        first_row = card.locator("tr.finding").first
        assert await first_row.get_attribute("data-rule") == "override_entries"
        assert await first_row.locator("td.num").inner_text() == "2"
        assert await first_row.locator("code.entry-id").count() == 2
        await shoot(page, "units-en")

        await card.locator("h2 a").click()
        await page.wait_for_selector("[data-testid=unit-name]")
        assert await page.inner_text("[data-testid=unit-status]") == "Open"
        kiosk_row = await page.inner_text(f"tr[data-kiosk='{BAD_KIOSK}']")
        assert "camera: ok" in kiosk_row and "thermometer: ok" in kiosk_row
        assert await page.locator("svg.chart rect.bar-allowed").count() == 4
        assert await page.locator("svg.chart rect.bar-denied").count() == 3
        assert await page.inner_text("[data-testid=entries-total]") == "65"
        await shoot(page, "unit-en")

        async with page.expect_download() as download_info:
            await page.click("[data-testid=download-csv]")
        download = await download_info.value
        assert download.suggested_filename.startswith(f"unit-{BAD}-")
        saved = await download.path()
        text = await asyncio.to_thread(Path(saved).read_text, encoding="utf-8")
        rows = list(csv.DictReader(io.StringIO(text)))
        findings = [(r["rule"], r["count"]) for r in rows if r["record"] == "finding"]
        assert findings == [("override_entries", "2"), ("thermometer_fault", "65")]
        assert {r["kiosk_id"] for r in rows if r["record"] == "kiosk"} == {BAD_KIOSK}

        # Close it for rectification, with a note; the confirmation is accepted.
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.fill("#note", "Fevers let in twice; thermometer stuck. Closed until fixed.")
        await page.click("[data-testid=close]")
        await page.wait_for_selector("[data-testid=status-changed]")
        assert await page.inner_text("[data-testid=unit-status]") == "Closed for rectification"
        history = await page.inner_text("[data-testid=history]")
        assert DAOWAI_INSPECTOR in history and "thermometer stuck" in history
        assert await kiosk_unit_status(base, tokens[BAD_KIOSK]) == "closed"
        await shoot(page, "unit-closed-en")

        # The same pages in Chinese, through the switch in the header.
        await page.click("nav.lang-switch a[lang=zh]")
        await page.wait_for_selector("html[lang=zh-CN]")
        assert await page.inner_text("[data-testid=unit-status]") == "停业整改"
        await shoot(page, "unit-closed-zh")
        await page.click("p.crumbs a")
        await page.wait_for_selector("[data-testid=unit-count]")
        assert "同一" not in await page.inner_text("main")  # no code_reuse here
        assert "工作人员放行了被拒绝的人员" in await page.inner_text("main")
        await shoot(page, "units-zh")
        await page.click("nav.lang-switch a[lang=en]")
        await page.wait_for_selector("html[lang=en]")
        await page.goto(f"{base}/dashboard/units/{BAD}")

        # ... and let it reopen.
        await page.fill("#note", "Thermometer replaced, staff briefed.")
        await page.click("[data-testid=reopen]")
        await page.wait_for_selector("[data-testid=close]")
        assert await page.inner_text("[data-testid=unit-status]") == "Open"
        assert await kiosk_unit_status(base, tokens[BAD_KIOSK]) == "open"

        await page.click("form.sign-out button")
        await page.wait_for_selector("#token")
        assert "/dashboard/sign-in" in page.url
        await page.goto(f"{base}/dashboard/units/{BAD}")
        assert "/dashboard/sign-in" in page.url  # signed out means out


async def test_another_district_sees_neither_unit_and_a_wrong_token_is_refused(
    collector_url: RunningCollector, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    base, tokens = collector_url.url, collector_url.seeded.tokens
    async with chromium_page(tmp_path / "profile", request.node.name, locale="en-US") as page:
        await page.goto(f"{base}/dashboard/lang/en?next=/dashboard/sign-in")
        await page.fill("#token", "A" * 43)
        await page.click("button[type=submit]")
        error = await page.inner_text("[data-testid=sign-in-error]")
        assert error == (
            "This token is not valid or has been revoked. Check with your administrator."
        )
        await page.fill("#token", tokens[BAD_KIOSK])
        await page.click("button[type=submit]")
        assert "kiosk token" in await page.inner_text("[data-testid=sign-in-error]")
        await shoot(page, "sign-in-refused-en")

        await sign_in(page, base, tokens[NANGANG_INSPECTOR])
        assert await listed_units(page) == [FAR]
        for venue in (BAD, GOOD):
            await page.goto(f"{base}/dashboard/units/{venue}")
            assert await page.inner_text("[data-testid=error-message]") == (
                "This is outside your region."
            )
        await page.goto(f"{base}/dashboard/?district=harbin/daowai")
        assert await page.inner_text("[data-testid=error-message]") == (
            "This is outside your region."
        )


async def test_the_pages_fit_a_phone_in_both_languages(
    collector_url: RunningCollector, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    base, tokens = collector_url.url, collector_url.seeded.tokens
    async with chromium_page(
        tmp_path / "profile", request.node.name, viewport=PHONE, locale="zh-CN"
    ) as page:
        await page.goto(f"{base}/dashboard/sign-in")
        assert await page.inner_text("h1") == "督查人员登录"  # Chinese by Accept-Language
        await shoot(page, "sign-in-zh-phone")
        await sign_in(page, base, tokens[DAOWAI_INSPECTOR])
        for lang in ("zh", "en"):
            await page.goto(f"{base}/dashboard/lang/{lang}?next=/dashboard/")
            pages = {"units": f"{base}/dashboard/", "unit": f"{base}/dashboard/units/{BAD}"}
            for name, url in pages.items():
                await page.goto(url)
                # Nothing wider than the screen: no sideways scrolling of the page itself.
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= PHONE["width"], (lang, name, width)
                await shoot(page, f"{name}-{lang}-phone")
            text = await page.inner_text("main")
            assert ("工作人员放行了被拒绝的人员" in text) == (lang == "zh")
