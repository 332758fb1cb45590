"""The inspectors' dashboard: server-rendered pages under /dashboard/, served by the collector
app itself (`setup(app)`, called by `app.build_app`). It keeps no state of its own but its
templates: sessions live in the database (kiosk.collector.sessions), and every figure comes
from the inspectors' API code (kiosk.collector.inspectors).

    GET  /dashboard/                              non-compliant units of the region
    GET  /dashboard/units/{venue_id}              a unit: kiosks, chart, findings, history
    GET  /dashboard/units/{venue_id}/export.csv   the API's CSV of the unit
    POST /dashboard/units/{venue_id}/status       close for rectification / reopen, with a note
    GET  /dashboard/sign-in, POST /dashboard/sign-in, POST /dashboard/sign-out
    GET  /dashboard/lang/{zh|en}?next=...         the language switch (a cookie)
    GET  /dashboard/static/...                    stylesheet, script, icon (no sign-in needed)

These are pages for people, not API: they are not in the OpenAPI document, they authenticate
by session cookie instead of a Bearer token, and they answer errors as HTML pages.
kiosk.collector.dashboard_frame has the frame (sessions, CSRF, headers, errors, rendering),
kiosk.collector.dashboard_views the pages with data.
"""

from __future__ import annotations

from aiohttp import web

from kiosk.collector import dashboard_frame as frame
from kiosk.collector import dashboard_views as views

PREFIX = frame.PREFIX


def setup(app: web.Application) -> None:
    """Route the dashboard's pages and add its middleware (before the app starts)."""
    app[frame.TEMPLATES_KEY] = frame.make_templates()
    app.middlewares.append(frame.dashboard_middleware)
    pages: list[tuple[str, str, frame.Handler, str]] = [
        ("GET", "/", views.units_page, "units"),
        ("GET", "/units/{venue_id}", views.unit_page, "unit"),
        ("GET", "/units/{venue_id}/export.csv", views.unit_csv, "unit_csv"),
        ("POST", "/units/{venue_id}/status", views.set_unit_status, "unit_status"),
        ("GET", "/sign-in", frame.sign_in_page, "sign_in"),
        ("POST", "/sign-in", frame.sign_in, "sign_in_post"),
        ("POST", "/sign-out", frame.sign_out, "sign_out"),
        ("GET", "/lang/{lang}", frame.switch_language, "lang"),
    ]
    for method, path, handler, name in pages:
        app.router.add_route(method, PREFIX + path, handler, name=frame.route_name(name))
    app.router.add_static(
        PREFIX + "/static/", frame.STATIC_DIR, name=frame.route_name("static")
    )
