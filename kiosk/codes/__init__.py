"""Health codes: a registry of formats chosen by prefix, each verified offline and purely.

Public interface (the rest of kiosk imports only these names from here):
- `verify(text, trust, revocation, now) -> CodeResult`: never raises, whatever the text.
- `TrustList`, `RevocationList`: parsed lists; `load_trust_list(path)`, `load_revocation_list(path)`
  and their `parse_*` twins over already-decoded JSON raise DataFileError naming the problem.
"""
