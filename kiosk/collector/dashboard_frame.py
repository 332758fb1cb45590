"""The frame every dashboard page shares: sign-in and sign-out, the session cookie, the language
switch, CSRF checks, security headers, HTML error pages and template rendering. The routes are
in kiosk.collector.dashboard, the pages with data in kiosk.collector.dashboard_views.

Security, in short (sessions.py has the session itself):
- The token is posted once, in a form, over HTTPS (plain HTTP only from a loopback address, for
  a collector tried out on one machine), and exchanged for a session. It never appears in a URL,
  a cookie or the database.
- The session cookie is HttpOnly, SameSite=Strict, Path=/, and Secure with the `__Host-` prefix
  whenever the request came over TLS. Over plain HTTP on loopback the browser would drop a
  Secure cookie, so there it is sent without (`kiosk_session`).
- Every POST form carries a CSRF token (per session; a double-submit nonce for the sign-in
  form, which has no session yet), and a POST whose `Origin` is another site is refused.
- Every page has a strict Content-Security-Policy (no inline script or style, nothing from
  another origin), frame-ancestors 'none' and X-Frame-Options DENY, Referrer-Policy same-origin
  (no-referrer would make browsers send `Origin: null` on the dashboard's own forms), and
  `Cache-Control: no-store`.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jinja2
from aiohttp import web

from kiosk.collector import dashboard_i18n as i18n
from kiosk.collector.bodies import read_body
from kiosk.collector.errors import ApiError
from kiosk.collector.keys import AUTH_KEY, CLOCK_KEY, CONFIG_KEY, STORAGE_KEY
from kiosk.collector.sessions import SESSION_LIFETIME_S, SessionStore, csrf_matches, csrf_token
from kiosk.collector.storage.base import Actor, Principal, StorageError
from kiosk.collector.tokens import looks_like_token, token_hash
from kiosk.wire import format_rfc3339

log = logging.getLogger(__name__)

PREFIX = "/dashboard"
TEMPLATES_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")
SESSION_COOKIE = "kiosk_session"
SECURE_SESSION_COOKIE = "__Host-kiosk_session"
SIGN_IN_COOKIE = "kiosk_sign_in"  # the sign-in form's double-submit nonce
SIGN_IN_NONCE_MAX_AGE_S = 3600
LANG_COOKIE_MAX_AGE_S = 365 * 86400
MAX_FORM_BYTES = 16 * 1024
DASHBOARD_ROLES = ("inspector",)  # the roles the inspectors' API serves (sync-api.md)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

TEMPLATES_KEY = web.AppKey("dashboard_templates", jinja2.Environment)


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in person of a request: the token's owner as of now, and the session."""

    principal: Principal
    session_id: str

    @property
    def csrf(self) -> str:
        return csrf_token(self.session_id)

    @property
    def region(self) -> str:
        assert self.principal.region is not None  # every inspector has one (current_viewer)
        return self.principal.region

    @property
    def actor(self) -> Actor:
        return Actor(self.principal.name, self.principal.role)


class Redirect(Exception):
    """Abort a handler with a 303 to `location` (clearing the session cookie when asked)."""

    def __init__(self, location: str, *, clear_session: bool = False) -> None:
        super().__init__(location)
        self.location = location
        self.clear_session = clear_session


# -- requests and responses --------------------------------------------------------------------


def now_of(request: web.Request) -> float:
    return request.config_dict[CLOCK_KEY]()


def lang_of(request: web.Request) -> i18n.Lang:
    return i18n.negotiate(
        request.cookies.get(i18n.LANG_COOKIE), request.headers.get("Accept-Language")
    )


def session_cookie_name(request: web.Request) -> str:
    return SECURE_SESSION_COOKIE if request.secure else SESSION_COOKIE


def is_loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def safe_next(target: str | None) -> str:
    """`target` when it is a page of the dashboard, else the dashboard's start: a sign-in or a
    language switch never sends the browser to another site."""
    start = f"{PREFIX}/"
    if not target or not target.startswith(start) or "//" in target or "\\" in target:
        return start
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in target):
        return start
    return target


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def route_name(name: str) -> str:
    return f"dashboard.{name}"


def is_dashboard(request: web.Request) -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


def page_url(
    request: web.Request, name: str, query: dict[str, str] | None = None, **parts: str
) -> str:
    url = request.app.router[route_name(name)].url_for(**parts)
    return str(url.with_query(query) if query else url)


async def read_form(request: web.Request) -> dict[str, str]:
    """A urlencoded form body, bounded in size and time; the first value of each field."""
    if request.content_type not in ("application/x-www-form-urlencoded", ""):
        raise web.HTTPUnsupportedMediaType(reason="send the form as urlencoded")
    config = request.config_dict[CONFIG_KEY]
    body = await read_body(request, limit=MAX_FORM_BYTES, within_s=config.server.body_timeout)
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(reason="the form is not UTF-8") from None
    return {name: values[0] for name, values in fields.items() if values}


def check_origin(request: web.Request) -> None:
    """Refuse a POST that another site's page sent (browsers name the page's origin)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return  # not a browser, or an old one: the CSRF token still has to match
    if origin != f"{request.scheme}://{request.host}":
        raise web.HTTPForbidden(reason="cross-site form")


# -- who is signed in ------------------------------------------------------------------------


async def current_viewer(request: web.Request) -> Viewer | None:
    """The signed-in person, or None. A session whose token was revoked or rotated, or whose
    owner may no longer use the dashboard, is ended here (the token is looked up every time)."""
    session_id = request.cookies.get(session_cookie_name(request))
    if not session_id:
        return None
    storage = request.config_dict[STORAGE_KEY]
    sessions = SessionStore(storage)
    session = await sessions.find(session_id, now=now_of(request))
    if session is None:
        return None
    principal = await storage.principal_by_token(session.token_hash)
    if principal is None or principal.role not in DASHBOARD_ROLES or principal.region is None:
        await sessions.end(session_id)
        request.config_dict[AUTH_KEY].note_failure(request, "session_revoked")
        return None
    return Viewer(principal, session_id)


async def require_viewer(request: web.Request) -> Viewer:
    viewer = await current_viewer(request)
    if viewer is None:
        had_cookie = session_cookie_name(request) in request.cookies
        query = {"next": request.path_qs}
        if had_cookie:
            query["ended"] = "1"
        raise Redirect(page_url(request, "sign_in", query), clear_session=had_cookie)
    return viewer


async def require_csrf(request: web.Request) -> tuple[Viewer, dict[str, str]]:
    """The viewer and the form of a POST, after checking its origin and CSRF token."""
    check_origin(request)
    viewer = await require_viewer(request)
    form = await read_form(request)
    if not csrf_matches(viewer.session_id, form.get("csrf")):
        raise web.HTTPForbidden(reason="the form's CSRF token does not match this session")
    return viewer, form


# -- rendering ---------------------------------------------------------------------------------


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every template is HTML; nothing is ever marked safe by hand
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        rule_words=i18n.rule_words,
        kind_words=i18n.kind_words,
        format_time=i18n.format_time,
        format_ago=i18n.format_ago,
        format_minute=i18n.format_minute,
        iso_time=format_rfc3339,
        format_duration=i18n.format_duration,
        lang_names=i18n.LANG_NAMES,
        langs=i18n.LANGS,
    )
    return env


def render(
    request: web.Request,
    template: str,
    *,
    status: int = 200,
    viewer: Viewer | None = None,
    **context: Any,
) -> web.Response:
    lang = lang_of(request)

    def t(key: str, **values: object) -> str:
        return i18n.translate(key, lang, **values)

    def url(name: str, query: dict[str, str] | None = None, **parts: str) -> str:
        return page_url(request, name, query, **parts)

    here = request.path_qs
    switch = {
        code: page_url(request, "lang", {"next": safe_next(here)}, lang=code)
        for code in i18n.LANGS
    }
    text = request.app[TEMPLATES_KEY].get_template(template).render(
        lang=lang,
        html_lang=i18n.HTML_LANG[lang],
        t=t,
        url=url,
        static=lambda name: f"{PREFIX}/static/{name}",
        viewer=viewer,
        lang_switch=switch,
        now=now_of(request),
        **context,
    )
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


# -- sign-in, sign-out, language ------------------------------------------------------------


async def sign_in_page(request: web.Request) -> web.Response:
    if await current_viewer(request) is not None:
        return redirect(safe_next(request.query.get("next")))
    notice = None
    if request.query.get("ended"):
        notice = "session_ended"
    elif request.query.get("signed_out"):
        notice = "signed_out"
    return _sign_in_form(request, notice=notice)


def _sign_in_form(
    request: web.Request, *, error: str | None = None, notice: str | None = None, status: int = 200
) -> web.Response:
    nonce = secrets.token_urlsafe(24)
    response = render(
        request,
        "sign_in.html",
        status=status,
        error=error,
        notice=notice,
        nonce=nonce,
        next_page=safe_next(request.query.get("next")),
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        nonce,
        max_age=SIGN_IN_NONCE_MAX_AGE_S,
        path=f"{PREFIX}/sign-in",
        secure=request.secure,
        httponly=True,
        samesite="Strict",
    )
    return response


async def sign_in(request: web.Request) -> web.Response:
    check_origin(request)
    form = await read_form(request)
    nonce = request.cookies.get(SIGN_IN_COOKIE)
    if not nonce or not hmac.compare_digest(nonce, form.get("nonce", "")):
        return _sign_in_form(request, error="error_form_expired", status=403)
    if not request.secure and not is_loopback(request):
        return _sign_in_form(request, error="error_plain_http", status=403)
    auth = request.config_dict[AUTH_KEY]
    auth.refuse_if_limited(request)  # 429 past the per-address limit on failed sign-ins
    token = form.get("token", "").strip()
    if not looks_like_token(token):
        auth.note_failure(request, "malformed")
        return _sign_in_form(request, error="error_token_format", status=401)
    storage = request.config_dict[STORAGE_KEY]
    hashed = token_hash(token)
    principal = await storage.principal_by_token(hashed)
    if principal is None:
        auth.note_failure(request, "unknown")
        return _sign_in_form(request, error="error_token_unknown", status=401)
    if principal.role not in DASHBOARD_ROLES or principal.region is None:
        auth.note_failure(request, "role")
        refusal = "error_token_kiosk" if principal.role == "kiosk" else "error_token_role"
        return _sign_in_form(request, error=refusal, status=403)
    now = now_of(request)
    session_id, _ = await SessionStore(storage).create(hashed, principal.name, now=now)
    await storage.audit(
        Actor(principal.name, principal.role), "dashboard.sign_in", None, {}, now=now
    )
    response = redirect(safe_next(form.get("next")))
    response.set_cookie(
        session_cookie_name(request),
        session_id,
        max_age=SESSION_LIFETIME_S,
        path="/",
        secure=request.secure,
        httponly=True,
        samesite="Strict",
    )
    response.del_cookie(SIGN_IN_COOKIE, path=f"{PREFIX}/sign-in")
    return response


async def sign_out(request: web.Request) -> web.Response:
    viewer, _ = await require_csrf(request)
    storage = request.config_dict[STORAGE_KEY]
    await SessionStore(storage).end(viewer.session_id)
    await storage.audit(viewer.actor, "dashboard.sign_out", None, {}, now=now_of(request))
    response = redirect(page_url(request, "sign_in", {"signed_out": "1"}))
    _clear_session_cookie(request, response)
    return response


async def switch_language(request: web.Request) -> web.Response:
    lang = i18n.parse_lang(request.match_info["lang"])
    if lang is None:
        raise web.HTTPNotFound()
    response = redirect(safe_next(request.query.get("next")))
    response.set_cookie(
        i18n.LANG_COOKIE,
        lang,
        max_age=LANG_COOKIE_MAX_AGE_S,
        path="/",
        secure=request.secure,
        httponly=True,
        samesite="Lax",
    )
    return response


def _clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(
        session_cookie_name(request),
        path="/",
        secure=request.secure,
        httponly=True,
        samesite="Strict",
    )


# -- the frame: errors and headers ------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error_page(request: web.Request, status: int, detail: str = "") -> web.Response:
    key = f"error_{status}" if f"error_{status}" in i18n.MESSAGES else (
        "error_500" if status >= 500 else "error_400"
    )
    return render(request, "error.html", status=status, message_key=key, detail=detail)


@web.middleware
async def dashboard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """For the dashboard's paths: HTML error pages instead of the API's JSON ones, redirects,
    and the security headers on every answer. Other paths pass through untouched."""
    if not is_dashboard(request):
        return await handler(request)
    response: web.StreamResponse
    try:
        response = await handler(request)
    except Redirect as exc:
        response = redirect(exc.location)
        if exc.clear_session:
            _clear_session_cookie(request, response)
    except ApiError as exc:
        response = _error_page(request, exc.status, exc.detail)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404 and request.path == PREFIX:
            response = redirect(f"{PREFIX}/")
        else:
            response = _error_page(request, exc.status, exc.reason if exc.status != 404 else "")
    except StorageError as exc:
        log.warning("storage error on %s %s: %s", request.method, request.path, exc)
        response = _error_page(request, 503)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        response = _error_page(request, 500)
    response.headers.update(SECURITY_HEADERS)
    if not request.path.startswith(f"{PREFIX}/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response
