"""The dashboard without a browser, on SQLite and PostgreSQL: the session (what the cookie and the
database hold, revocation, expiry, sign-out), CSRF and origin checks, security headers, escaping,
scope, audit, the CSV and the status forms, through the collector's real app (aiohttp's test
client). The browser tests are in test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from collector_helpers import CLI, Collector
from dashboard_city import BAD, BAD_KIOSK, DAOWAI_INSPECTOR, FAR, GOOD, NANGANG_INSPECTOR, NOW, city

from kiosk.collector.app import build_app
from kiosk.collector.config import CollectorConfig
from kiosk.collector.dashboard_frame import safe_next
from kiosk.collector.dashboard_i18n import negotiate
from kiosk.collector.keys import STORAGE_KEY
from kiosk.collector.scenario import Seeded, seed
from kiosk.collector.sessions import SESSION_LIFETIME_S, session_key
from kiosk.collector.storage.base import Storage, Venue
from kiosk.collector.tokens import new_token, token_hash

EN = {"Accept-Language": "en"}
# For what does not depend on the database (the session table, the scope, audit, CSV, status
# and the chart's and district filter's queries run on both).
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
NONCE = re.compile(r'name="nonce" value="([^"]+)"')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class City:
    collector: Collector
    seeded: Seeded

    @property
    def client(self) -> Any:
        return self.collector.client

    def token(self, name: str) -> str:
        return self.seeded.tokens[name]


@pytest.fixture
async def town(collector: Collector) -> City:
    """The collector fixture's app, with the dashboard's city seeded and its clock at NOW."""
    seeded = await seed(collector.storage, city())
    collector.clock.now = NOW
    return City(collector, seeded)


async def sign_in(client: Any, token: str, next_page: str = "/dashboard/") -> Any:
    form = await client.get("/dashboard/sign-in", headers=EN)
    assert form.status == 200
    nonce = NONCE.search(await form.text())
    assert nonce is not None
    return await client.post(
        "/dashboard/sign-in",
        data={"nonce": nonce.group(1), "token": token, "next": next_page},
        headers=EN,
        allow_redirects=False,
    )


def set_cookies(response: Any) -> dict[str, Any]:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        jar.load(header)
    return {name: morsel for name, morsel in jar.items()}


async def csrf_of(client: Any, path: str) -> str:
    page = await client.get(path, headers=EN)
    assert page.status == 200, await page.text()
    found = CSRF.search(await page.text())
    assert found is not None
    return found.group(1)


async def session_rows(storage: Storage) -> list[tuple[Any, ...]]:
    if storage.dialect == "sqlite":
        return await storage.read(  # type: ignore[attr-defined,no-any-return]
            lambda conn: conn.execute(
                "SELECT session_key, token_hash, principal FROM dashboard_sessions"
            ).fetchall()
        )
    rows = await storage.fetch(  # type: ignore[attr-defined]
        "SELECT session_key, token_hash, principal FROM dashboard_sessions"
    )
    return [tuple(row) for row in rows]


# -- the session ----------------------------------------------------------------------------


async def test_the_token_is_exchanged_for_a_strict_session_cookie(town: City) -> None:
    token = town.token(DAOWAI_INSPECTOR)
    response = await sign_in(town.client, token, next_page=f"/dashboard/units/{BAD}")
    assert response.status == 303
    assert response.headers["Location"] == f"/dashboard/units/{BAD}"
    cookie = set_cookies(response)["kiosk_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain HTTP on loopback; over TLS see the test below
    assert int(cookie["max-age"]) == SESSION_LIFETIME_S
    session_id = cookie.value
    assert token not in json.dumps(dict(response.headers))
    # The database keeps hashes only: of the session id, and of the token.
    rows = await session_rows(town.collector.storage)
    assert rows == [(session_key(session_id), token_hash(token), DAOWAI_INSPECTOR)]
    page = await town.client.get(f"/dashboard/units/{BAD}", headers=EN)
    assert page.status == 200
    assert token not in await page.text()
    audit = await town.collector.storage.audit_records(
        since=0, until=NOW + 1, after_id=0, limit=1000
    )
    assert ("dashboard.sign_in", DAOWAI_INSPECTOR) in {(r.action, r.actor) for r in audit}


@sqlite_only
@pytest.mark.parametrize(
    ("token", "status", "message"),
    [
        ("A" * 43, 401, "This token is not valid or has been revoked."),
        ("too short", 401, "That is not a token: a token is 43 characters"),
        (BAD_KIOSK, 403, "This is a kiosk token; kiosks cannot sign in here."),
        ("scenario-admin", 403, "Only inspector tokens can sign in here."),
    ],
)
async def test_wrong_tokens_are_refused_with_a_clear_message(
    town: City, token: str, status: int, message: str
) -> None:
    token = town.seeded.tokens.get(token, token)
    response = await sign_in(town.client, token)
    assert response.status == status
    text = await response.text()
    assert message in text and 'role="alert"' in text
    assert "kiosk_session" not in set_cookies(response)
    assert await session_rows(town.collector.storage) == []


@sqlite_only
async def test_the_sign_in_form_needs_its_nonce_and_the_same_origin(town: City) -> None:
    token = town.token(DAOWAI_INSPECTOR)
    no_nonce = await town.client.post(
        "/dashboard/sign-in", data={"token": token}, headers=EN, allow_redirects=False
    )
    assert no_nonce.status == 403
    assert "The form has expired" in await no_nonce.text()
    form = await town.client.get("/dashboard/sign-in")
    nonce = NONCE.search(await form.text())
    assert nonce is not None
    cross_site = await town.client.post(
        "/dashboard/sign-in",
        data={"nonce": nonce.group(1), "token": token},
        headers={**EN, "Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert cross_site.status == 403
    assert await session_rows(town.collector.storage) == []


async def test_revoking_the_token_ends_its_sessions_at_once(town: City) -> None:
    await sign_in(town.client, town.token(DAOWAI_INSPECTOR))
    assert (await town.client.get("/dashboard/", allow_redirects=False)).status == 200
    await town.collector.storage.set_token(DAOWAI_INSPECTOR, None, actor=CLI, now=NOW)
    after = await town.client.get("/dashboard/", allow_redirects=False)
    assert after.status == 303
    assert after.headers["Location"] == "/dashboard/sign-in?next=/dashboard/&ended=1"
    assert set_cookies(after)["kiosk_session"].value == ""  # the browser drops it
    assert await session_rows(town.collector.storage) == []
    page = await town.client.get(after.headers["Location"], headers=EN)
    assert "Your session has ended" in await page.text()


@sqlite_only
async def test_a_rotated_token_ends_the_old_sessions_too(town: City) -> None:
    await sign_in(town.client, town.token(DAOWAI_INSPECTOR))
    await town.collector.storage.set_token(
        DAOWAI_INSPECTOR, token_hash(new_token()), actor=CLI, now=NOW
    )
    assert (await town.client.get("/dashboard/", allow_redirects=False)).status == 303


async def test_a_session_expires(town: City) -> None:
    await sign_in(town.client, town.token(DAOWAI_INSPECTOR))
    town.collector.clock.now = NOW + SESSION_LIFETIME_S - 1
    assert (await town.client.get("/dashboard/", allow_redirects=False)).status == 200
    town.collector.clock.now = NOW + SESSION_LIFETIME_S
    assert (await town.client.get("/dashboard/", allow_redirects=False)).status == 303


async def test_sign_out_ends_the_session_for_good(town: City) -> None:
    response = await sign_in(town.client, town.token(DAOWAI_INSPECTOR))
    session_id = set_cookies(response)["kiosk_session"].value
    csrf = await csrf_of(town.client, "/dashboard/")
    out = await town.client.post(
        "/dashboard/sign-out", data={"csrf": csrf}, allow_redirects=False
    )
    assert out.status == 303
    assert set_cookies(out)["kiosk_session"].value == ""
    assert await session_rows(town.collector.storage) == []
    # Replaying the old cookie gets nothing.
    town.client.session.cookie_jar.clear()
    replay = await town.client.get(
        "/dashboard/", headers={"Cookie": f"kiosk_session={session_id}"}, allow_redirects=False
    )
    assert replay.status == 303


@sqlite_only
async def test_forms_need_the_sessions_csrf_token(town: City) -> None:
    storage = town.collector.storage
    await sign_in(town.client, town.token(DAOWAI_INSPECTOR))
    path = f"/dashboard/units/{BAD}/status"
    order = {"status": "closed", "note": "closing"}
    for csrf in (None, "", "0" * 64):
        data = order if csrf is None else {**order, "csrf": csrf}
        refused = await town.client.post(path, data=data, headers=EN, allow_redirects=False)
        assert refused.status == 403
    cross_site = await town.client.post(
        path,
        data={**order, "csrf": await csrf_of(town.client, f"/dashboard/units/{BAD}")},
        headers={**EN, "Origin": "http://127.0.0.1:1"},
        allow_redirects=False,
    )
    assert cross_site.status == 403
    assert (await storage.venue(BAD)).unit_status == "open"  # type: ignore[union-attr]
    signed_out = await town.client.post(
        "/dashboard/sign-out", data={"csrf": "nope"}, allow_redirects=False
    )
    assert signed_out.status == 403
    assert len(await session_rows(storage)) == 1


# -- what the pages show ------------------------------------------------------------------------


@sqlite_only
async def test_pages_carry_strict_security_headers(town: City) -> None:
    await sign_in(town.client, town.token(DAOWAI_INSPECTOR))
    for path in (
        "/dashboard/",
        f"/dashboard/units/{BAD}",
        "/dashboard/sign-in",
        "/dashboard/static/dashboard.css",
        "/dashboard/static/dashboard.js",
        "/dashboard/no-such-page",
        f"/dashboard/units/{FAR}",
    ):
        response = await town.client.get(path, allow_redirects=False)
        assert response.status in (200, 303, 403, 404), path
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp, path
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, path
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        if response.content_type == "text/html":
            text = await response.text()
            assert "<script>" not in text and " style=" not in text and "http://" not in text
            assert "https://" not in text  # nothing loaded from elsewhere
            assert response.headers["Cache-Control"] == "no-store"
    missing = await town.client.get("/dashboard/no-such-page", headers=EN)
    assert missing.status == 404 and missing.content_type == "text/html"


@sqlite_only
async def test_everything_shown_is_escaped(town: City) -> None:
    storage = town.collector.storage
    await storage.add_venue(
        Venue("daowai-xss", "<script>alert('x')</script>&co", "harbin/daowai", "general", NOW),
        actor=CLI,
    )
    await sign_in(town.client, town.token(DAOWAI_INSPECTOR))
    page = await town.client.get("/dashboard/units/daowai-xss", headers=EN)
    text = await page.text()
    assert page.status == 200
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;co" in text


async def test_an_inspector_sees_only_their_region(town: City) -> None:
    await sign_in(town.client, town.token(NANGANG_INSPECTOR))
    listing = await town.client.get("/dashboard/", headers=EN)
    text = await listing.text()
    assert f'data-venue="{FAR}"' in text
    assert BAD not in text and GOOD not in text
    for path in (
        f"/dashboard/units/{BAD}",
        f"/dashboard/units/{BAD}/export.csv",
        "/dashboard/?district=harbin/daowai",
        "/dashboard/?district=harbin",
    ):
        refused = await town.client.get(path, headers=EN)
        assert refused.status == 403, path
        assert "This is outside your region." in await refused.text()
    status = await town.client.post(
        f"/dashboard/units/{BAD}/status",
        data={"status": "closed", "note": "x", "csrf": await csrf_of(town.client, "/dashboard/")},
        headers=EN,
    )
    assert status.status == 403
    assert (await town.collector.storage.venue(BAD)).unit_status == "open"  # type: ignore[union-attr]


async def test_the_district_filter_offers_the_regions_within_scope(town: City) -> None:
    storage = town.collector.storage
    await storage.add_venue(
        Venue("daowai-sub", "Sub", "harbin/daowai/east", "general", NOW), actor=CLI
    )
    await sign_in(town.client, town.token(DAOWAI_INSPECTOR))
    text = await (await town.client.get("/dashboard/", headers=EN)).text()
    options = re.findall(r'<option value="([^"]*)"', text)
    assert options == ["", "harbin/daowai/east"]
    narrowed = await town.client.get("/dashboard/?district=harbin/daowai/east", headers=EN)
    assert 'data-testid="no-units"' in await narrowed.text()


async def test_dashboard_reads_are_audited_as_the_api_audits_them(town: City) -> None:
    storage = town.collector.storage
    token = town.token(DAOWAI_INSPECTOR)
    bearer = {"Authorization": f"Bearer {token}"}

    async def last_record() -> tuple[str, str, str | None, dict[str, Any]]:
        records = await storage.audit_records(since=0, until=NOW + 1, after_id=0, limit=10_000)
        record = records[-1]
        return record.actor, record.action, record.target, record.detail

    assert (await town.client.get(f"/api/v1/units/{BAD}", headers=bearer)).status == 200
    by_api = await last_record()
    await sign_in(town.client, token)
    assert (await town.client.get(f"/dashboard/units/{BAD}")).status == 200
    assert await last_record() == by_api
    assert by_api[:3] == (DAOWAI_INSPECTOR, "read_unit", BAD)

    assert (await town.client.get("/api/v1/noncompliant", headers=bearer)).status == 200
    listed_by_api = await last_record()
    assert (await town.client.get("/dashboard/")).status == 200
    assert await last_record() == listed_by_api

    assert (await town.client.get(f"/dashboard/units/{BAD}/export.csv")).status == 200
    assert await last_record() == by_api


async def test_the_csv_download_is_the_apis_csv(town: City) -> None:
    token = town.token(DAOWAI_INSPECTOR)
    api = await town.client.get(
        f"/api/v1/units/{BAD}", headers={"Authorization": f"Bearer {token}", "Accept": "text/csv"}
    )
    await sign_in(town.client, token)
    download = await town.client.get(f"/dashboard/units/{BAD}/export.csv")
    assert download.status == 200
    assert download.content_type == "text/csv"
    assert download.headers["Content-Disposition"] == (
        f'attachment; filename="unit-{BAD}-20220305T1200Z.csv"'
    )
    assert await download.text() == await api.text()
    since = "2022-03-05T08:00:00Z"
    api_window = await town.client.get(
        f"/api/v1/units/{BAD}?since={since}&until=2022-03-05T10:00:00Z",
        headers={"Authorization": f"Bearer {token}", "Accept": "text/csv"},
    )
    window = await town.client.get(
        f"/dashboard/units/{BAD}/export.csv?since=2022-03-05T08:00&until=2022-03-05T10:00"
    )
    assert await window.text() == await api_window.text()


async def test_close_and_reopen_with_a_note(town: City) -> None:
    storage = town.collector.storage
    kiosk = {"Authorization": f"Bearer {town.token(BAD_KIOSK)}"}
    await sign_in(town.client, town.token(DAOWAI_INSPECTOR))
    path = f"/dashboard/units/{BAD}/status"
    csrf = await csrf_of(town.client, f"/dashboard/units/{BAD}")
    for note, message in (("   ", "Write a note."), ("x" * 501, "at most 500 characters")):
        refused = await town.client.post(
            path, data={"status": "closed", "note": note, "csrf": csrf}, headers=EN
        )
        assert refused.status == 400
        assert message in await refused.text()
    assert (await storage.venue(BAD)).unit_status == "open"  # type: ignore[union-attr]

    closed = await town.client.post(
        path,
        data={"status": "closed", "note": "x" * 500, "csrf": csrf},
        headers=EN,
        allow_redirects=False,
    )
    assert closed.status == 303
    assert closed.headers["Location"] == f"/dashboard/units/{BAD}?changed=closed"
    assert (await storage.venue(BAD)).unit_status == "closed"  # type: ignore[union-attr]
    config = await (await town.client.get("/api/v1/kiosk/config", headers=kiosk)).json()
    assert config["unit_status"] == "closed"
    page = await (await town.client.get(closed.headers["Location"], headers=EN)).text()
    assert "Closed for rectification" in page and 'data-testid="reopen"' in page

    reopened = await town.client.post(
        path, data={"status": "open", "note": "fixed", "csrf": csrf}, allow_redirects=False
    )
    assert reopened.status == 303
    config = await (await town.client.get("/api/v1/kiosk/config", headers=kiosk)).json()
    assert config["unit_status"] == "open"
    audit = await storage.audit_records(since=0, until=NOW + 1, after_id=0, limit=10_000)
    changes = [r for r in audit if r.target == BAD and r.actor == DAOWAI_INSPECTOR
               and "status" in r.action]
    assert len(changes) == 2


# -- language ------------------------------------------------------------------------------


def test_the_language_follows_the_cookie_then_accept_language() -> None:
    assert negotiate(None, None) == "zh"
    assert negotiate(None, "en-US,en;q=0.9") == "en"
    assert negotiate(None, "de-DE, en;q=0.5, zh-CN;q=0.8") == "zh"
    assert negotiate(None, "fr, de") == "zh"
    assert negotiate(None, "zh;q=0, en;q=0.1") == "en"
    assert negotiate("en", "zh-CN") == "en"
    assert negotiate("xx", "en") == "en"


def test_a_next_page_stays_in_the_dashboard() -> None:
    assert safe_next("/dashboard/units/a?since=x") == "/dashboard/units/a?since=x"
    for target in (None, "", "https://evil.example/", "//evil.example/dashboard/",
                   "/dashboard//evil", "/dashboard/\\evil", "/api/v1/audit", "/dashboard/\n"):
        assert safe_next(target) == "/dashboard/"


@sqlite_only
async def test_the_language_switch_is_remembered(town: City) -> None:
    await sign_in(town.client, town.token(DAOWAI_INSPECTOR))
    switched = await town.client.get(
        "/dashboard/lang/en?next=https://evil.example/", allow_redirects=False
    )
    assert switched.headers["Location"] == "/dashboard/"
    assert set_cookies(switched)["kiosk_lang"].value == "en"
    page = await town.client.get("/dashboard/", headers={"Accept-Language": "zh-CN"})
    text = await page.text()
    assert '<html lang="en">' in text and "Non-compliant units" in text
    await town.client.get("/dashboard/lang/zh")
    text = await (await town.client.get("/dashboard/", headers=EN)).text()
    assert '<html lang="zh-CN">' in text and "不合规场所" in text


# -- TLS -------------------------------------------------------------------------------------------


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def tls_collector(tmp_path: Path) -> AsyncIterator[tuple[str, Seeded]]:
    cert, key = _self_signed(tmp_path)
    config = CollectorConfig.model_validate({"database": {"url": f"sqlite:///{tmp_path}/c.db"}})
    app = build_app(config, clock=lambda: NOW)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        seeded = await seed(app[STORAGE_KEY], city())
        port = runner.addresses[0][1]
        yield f"https://127.0.0.1:{port}", seeded
    finally:
        await runner.cleanup()


async def test_over_tls_the_session_cookie_is_secure_and_host_only(
    tls_collector: tuple[str, Seeded],
) -> None:
    base, seeded = tls_collector
    connector = aiohttp.TCPConnector(ssl=False)  # the test's own self-signed certificate
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base, connector=connector, cookie_jar=jar) as client:
        response = await sign_in(client, seeded.tokens[DAOWAI_INSPECTOR])
        assert response.status == 303
        cookies = set_cookies(response)
        assert "kiosk_session" not in cookies
        cookie = cookies["__Host-kiosk_session"]
        assert cookie["secure"] and cookie["httponly"] and cookie["path"] == "/"
        assert cookie["samesite"] == "Strict" and not cookie["domain"]
        page = await client.get("/dashboard/", allow_redirects=False)
        assert page.status == 200
