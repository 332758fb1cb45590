"""Health codes: a registry of formats chosen by prefix, each verified offline and purely.

Public interface (the rest of kiosk imports only these names from here):
- `verify(text, trust, revocation, now) -> CodeResult`: never raises, whatever the text.
- `TrustList`, `RevocationList`: parsed lists; `load_trust_list(path)`, `load_revocation_list(path)`
  and their `parse_*` twins over already-decoded JSON raise DataFileError naming the problem.
  `TrustList()` and `RevocationList()` are the empty lists; `TrustList.to_jwks()` and
  `RevocationList.to_json()` write them back; `revocation_hash(iss, sub)` is what a revocation
  list holds for a holder.

Issuing codes (keys, signing: for the CLI, the demo and tests) lives in `kiosk.codes.issuing`.
"""

from kiosk.codes.lists import (
    RevocationList,
    TrustedKey,
    TrustList,
    load_revocation_list,
    load_trust_list,
    parse_revocation_list,
    parse_trust_list,
    revocation_hash,
)
from kiosk.codes.registry import verify

__all__ = [
    "RevocationList",
    "TrustList",
    "TrustedKey",
    "load_revocation_list",
    "load_trust_list",
    "parse_revocation_list",
    "parse_trust_list",
    "revocation_hash",
    "verify",
]
