"""Sample health codes made on the fly with a throwaway issuer key: the demo's visitors, and the
codes the door's tests show to a real kiosk.

Nothing here is a secret worth keeping: the issuer key lives in memory for one run, and the
trust list and revocation list written beside the frames name only its public half.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kiosk.codes import RevocationList, TrustList
from kiosk.codes.issuing import IssuerKey, new_issuer_key, random_sub
from kiosk.model import Status

SAMPLE_ISSUER = "demo-health"
SAMPLE_KID = "demo-1"

# What each kind of sample is and what a kiosk with the default policy makes of it.
SAMPLE_KINDS: dict[str, str] = {
    "green": "a valid green code",
    "yellow": "a valid yellow code (status_yellow)",
    "red": "a valid red code (status_red)",
    "expired": "a green code past its expiry (code_expired)",
    "forged": "a green code signed by a key that merely claims the issuer's kid "
    "(code_bad_signature)",
    "revoked": "a green code of a holder on the revocation list (code_revoked)",
    "not_yet_valid": "a green code issued an hour from now (code_not_yet_valid)",
    "unknown": "a QR code that is no health code at all (code_unknown_format)",
}

UNKNOWN_TEXT = "https://example.com/menu?table=7"


@dataclass
class SampleIssuer:
    """An issuer, a forger using its kid, and the holders whose codes are revoked."""

    key: IssuerKey
    forger: IssuerKey
    revoked_subs: set[str] = field(default_factory=set)

    @property
    def trust(self) -> TrustList:
        return TrustList((self.key.trusted_key,))

    def revocation(self, updated: int) -> RevocationList:
        return RevocationList.of_holders(
            ((self.key.iss, sub) for sub in sorted(self.revoked_subs)), updated=updated
        )

    def code(self, kind: str, now: int, *, sub: str | None = None, ttl_s: int = 86_400) -> str:
        """The QR text of one sample of `kind` (see SAMPLE_KINDS), valid around `now`. Each call
        is another holder unless `sub` is given."""
        holder = sub or random_sub()
        if kind in ("green", "yellow", "red"):
            return self.key.issue(sub=holder, status=Status(kind), iat=now - 60, ttl_s=ttl_s)
        if kind == "expired":
            return self.key.issue(
                sub=holder, status=Status.GREEN, iat=now - 2 * 86_400, ttl_s=86_400
            )
        if kind == "forged":
            return self.forger.issue(sub=holder, status=Status.GREEN, iat=now - 60, ttl_s=ttl_s)
        if kind == "revoked":
            self.revoked_subs.add(holder)
            return self.key.issue(sub=holder, status=Status.GREEN, iat=now - 60, ttl_s=ttl_s)
        if kind == "not_yet_valid":
            return self.key.issue(sub=holder, status=Status.GREEN, iat=now + 3600, ttl_s=ttl_s)
        if kind == "unknown":
            return UNKNOWN_TEXT
        raise ValueError(f"unknown sample kind {kind!r}; one of {', '.join(SAMPLE_KINDS)}")

    def write_lists(self, folder: Path, *, updated: int) -> tuple[Path, Path]:
        """trust-list.json and revocation-list.json in `folder`; their paths."""
        trust_path = folder / "trust-list.json"
        revocation_path = folder / "revocation-list.json"
        _write_json(trust_path, self.trust.to_jwks())
        _write_json(revocation_path, self.revocation(updated).to_json())
        return trust_path, revocation_path


def new_sample_issuer(*, kid: str = SAMPLE_KID, iss: str = SAMPLE_ISSUER) -> SampleIssuer:
    return SampleIssuer(
        key=new_issuer_key(kid=kid, iss=iss), forger=new_issuer_key(kid=kid, iss=iss)
    )


def write_pseudonym_key(path: Path) -> None:
    """A fresh deployment pseudonym key (base64url of 32 random bytes), mode 0600."""
    import base64

    text = base64.urlsafe_b64encode(os.urandom(32)).decode("ascii").rstrip("=")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text + "\n")


def _write_json(path: Path, value: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def kinds(names: Iterable[str]) -> list[str]:
    """`names` checked against SAMPLE_KINDS (ValueError names the first unknown one)."""
    chosen = list(names)
    for name in chosen:
        if name not in SAMPLE_KINDS:
            raise ValueError(f"unknown sample kind {name!r}; one of {', '.join(SAMPLE_KINDS)}")
    return chosen
