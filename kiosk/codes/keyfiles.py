"""Issuer key files, as `kiosk keys new` writes them and `kiosk codes issue` reads them.

`save_issuer_key(key, DIR)` writes, for kid K:
- `DIR/K.key.pem`: the private key, PEM PKCS#8 unencrypted, created with mode 0600 (never made
  readable first and restricted after); an existing file is never overwritten;
- `DIR/K.key.json`: what the PEM cannot say: `{"kid": K, "iss": ..., "jwk": <public JWK>}`;
- `DIR/trust.json`: the trust list (JWKS) holding the public key. When DIR already has one, the
  key is added to it (so several keys made into one directory share one trust list); a taken
  kid is refused. It is replaced atomically.

`load_issuer_key(path)` reads the PEM and the `.key.json` beside it (for `X.pem` without the
`.key.pem` ending: `X.json`); `kid=` and `iss=` given by the caller win over that file, and with
both given no such file is needed. Problems raise DataFileError naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.codes.issuing import IssuerKey
from kiosk.codes.lists import TrustList, load_trust_list, read_json_file
from kiosk.codes.syntax import b64url_encode
from kiosk.errors import DataFileError

log = logging.getLogger(__name__)

TRUST_FILE = "trust.json"
KEY_SUFFIX = ".key.pem"
META_SUFFIX = ".key.json"
# A kid names files, so here it is kept to characters that are safe in a file name everywhere.
FILE_KID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class IssuerFiles:
    key: Path
    meta: Path
    trust: Path


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` from the start; DataFileError if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise DataFileError(f"{path}: already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise DataFileError(f"{path}: cannot create ({exc.strerror})") from None
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def write_trust_list(path: Path, trust: TrustList) -> None:
    """Write the JWKS to `path` atomically (a temporary file renamed over it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(trust.to_jwks(), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise DataFileError(f"{path}: cannot write the trust list ({exc.strerror})") from None


def save_issuer_key(key: IssuerKey, directory: Path) -> IssuerFiles:
    """Write the key, its metadata and the trust list into `directory` (created when missing)."""
    if not FILE_KID.fullmatch(key.kid):
        raise DataFileError(
            f"kid {key.kid!r}: to name its files a kid must be 1 to 64 letters, digits, '.', '_'"
            " or '-', starting with a letter or digit"
        )
    directory = Path(directory)
    files = IssuerFiles(
        key=directory / f"{key.kid}{KEY_SUFFIX}",
        meta=directory / f"{key.kid}{META_SUFFIX}",
        trust=directory / TRUST_FILE,
    )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFileError(f"{directory}: cannot create the directory ({exc.strerror})") from None
    for path in (files.key, files.meta):
        if path.exists():
            raise DataFileError(f"{path}: already exists; refusing to overwrite it")
    trust = load_trust_list(files.trust) if files.trust.exists() else TrustList()
    if trust.get(key.kid) is not None:
        raise DataFileError(f"{files.trust}: already holds a key with kid {key.kid!r}")
    _write_new(files.key, private_key_pem(key.private_key), 0o600)
    meta = {"kid": key.kid, "iss": key.iss, "jwk": key.trusted_key.to_jwk()}
    _write_new(files.meta, (json.dumps(meta, indent=1) + "\n").encode(), 0o644)
    write_trust_list(files.trust, trust.with_key(key.trusted_key))
    return files


def meta_path_for(key_path: Path) -> Path:
    name = key_path.name
    if name.endswith(KEY_SUFFIX):
        return key_path.with_name(name[: -len(KEY_SUFFIX)] + META_SUFFIX)
    return key_path.with_suffix(".json")


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM (PKCS#8) file; DataFileError naming the file."""
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataFileError(f"{path}: key file not found") from None
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read the key file ({exc.strerror})") from None
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise DataFileError(f"{path}: key is encrypted; kiosk reads unencrypted PKCS#8") from None
    except (ValueError, UnsupportedAlgorithm):
        raise DataFileError(f"{path}: not a PEM private key (PKCS#8)") from None
    if not isinstance(private_key, Ed25519PrivateKey):
        kind = type(private_key).__name__.removesuffix("PrivateKey").lstrip("_")
        raise DataFileError(f"{path}: not an Ed25519 key ({kind}); VHC1 codes use Ed25519")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s: private key file is open to other users (mode %o)", path, mode & 0o777)
    return private_key


def load_issuer_key(
    path: Path | str, *, kid: str | None = None, iss: str | None = None
) -> IssuerKey:
    """The issuer key in `path` with its kid and iss (see the module's docstring)."""
    path = Path(path)
    private_key = load_private_key(path)
    where = path
    if kid is None or iss is None:
        where = meta_path_for(path)
        if not where.exists():
            raise DataFileError(
                f"{where}: not found; it tells the kid and iss of {path.name}"
                " (or give both --kid and --issuer)"
            )
        meta = read_json_file(where, "key information file")
        if not isinstance(meta, dict):
            raise DataFileError(f"{where}: expected a JSON object with kid, iss and jwk")
        jwk = meta.get("jwk")
        x = b64url_encode(private_key.public_key().public_bytes_raw())
        if not isinstance(jwk, dict) or jwk.get("x") != x:
            raise DataFileError(f"{where}: jwk.x is not the public key of {path.name}")
        kid = meta.get("kid") if kid is None else kid
        iss = meta.get("iss") if iss is None else iss
    if not isinstance(kid, str) or not isinstance(iss, str):
        raise DataFileError(f"{where}: kid and iss must be strings")
    try:
        return IssuerKey(private_key, kid=kid, iss=iss)
    except ValueError as exc:
        raise DataFileError(f"{where}: {exc}") from None
