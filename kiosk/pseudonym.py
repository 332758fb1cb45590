"""The subject pseudonym an entry carries instead of the holder's identity (sync-api.md `subject`).

Keyed, so the collector can tell one code used at several doors of a deployment, while nobody
without the deployment's key can test a guessed `iss:sub` against a log.
"""

from __future__ import annotations

import hashlib
import hmac


def subject_pseudonym(key: bytes, iss: str, sub: str) -> str:
    """64 lowercase hex: HMAC-SHA256 of the UTF-8 bytes of `iss:sub` under `key`."""
    if not key:
        # An empty key would make the pseudonym a plain, reversible-by-guessing hash.
        raise ValueError("the pseudonym key must not be empty")
    return hmac.new(key, f"{iss}:{sub}".encode(), hashlib.sha256).hexdigest()
