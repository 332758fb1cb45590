"""Tokens and region paths (sync-api.md "Authentication and roles"), pure.

A token is 32 random bytes in base64url (43 characters), shown once; the collector keeps only
its SHA-256 and finds a token by that hash. A region is a path of lowercase segments
(`harbin/daowai`); a scope covers its own region and those below it, by whole segments.
"""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_SEGMENT = re.compile(r"^[a-z0-9_-]+$")
MAX_REGION_LENGTH = 200


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The SHA-256 hex the collector stores and looks a token up by."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def looks_like_token(text: str) -> bool:
    return TOKEN_PATTERN.match(text) is not None


def region_problem(region: str) -> str | None:
    """Why `region` is not a valid path, or None when it is."""
    if not region:
        return "empty; give a path such as harbin/daowai"
    if len(region) > MAX_REGION_LENGTH:
        return f"longer than {MAX_REGION_LENGTH} characters"
    for segment in region.split("/"):
        if not segment:
            return "has an empty segment (a leading, trailing or doubled /)"
        if not _SEGMENT.match(segment):
            return f"segment {segment!r} may hold only a-z, 0-9, _ and -"
    return None


def region_covers(scope: str, region: str) -> bool:
    """Whether an inspector of `scope` sees `region`: the same path, or one below it by whole
    segments (`city/d1` covers `city/d1/x`, not `city/d10`)."""
    return region == scope or region.startswith(scope + "/")
