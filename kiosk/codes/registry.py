"""The registry of code formats, chosen by the prefix of the QR text.

Adding a format (the EU Digital COVID Certificate, `HC1:`) is one new module with a verifier of
the `FormatVerifier` shape and one line in `FORMATS`. A text that no format claims is reported as
format `unknown`, verdict `unknown_format`: a QR code was read, it just is not a health code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kiosk.codes import vhc1
from kiosk.codes.lists import RevocationList, TrustList
from kiosk.model import CodeFormat, CodeResult, Verdict

log = logging.getLogger(__name__)

FormatVerifier = Callable[[str, TrustList, RevocationList, int], CodeResult]


@dataclass(frozen=True, slots=True)
class CodeFormatEntry:
    format: CodeFormat
    prefix: str
    verify: FormatVerifier


FORMATS: tuple[CodeFormatEntry, ...] = (
    CodeFormatEntry(CodeFormat.VHC1, vhc1.PREFIX, vhc1.verify_vhc1),
)

UNKNOWN_FORMAT = CodeResult(CodeFormat.UNKNOWN, Verdict.UNKNOWN_FORMAT)


def verify(
    text: str,
    trust: TrustList,
    revocation: RevocationList,
    now: int,
    *,
    formats: Sequence[CodeFormatEntry] = FORMATS,
) -> CodeResult:
    """Verify `text` with the format whose prefix it starts with; never raises.

    Each format's verifier is written not to raise (VHC1's is proven so by property tests). The
    guard below is the door's last line for a future format that does: one odd QR code must
    not stop a kiosk, so such a code counts as `malformed` of its format and the bug is logged.
    """
    for entry in formats:
        if text.startswith(entry.prefix):
            try:
                return entry.verify(text, trust, revocation, now)
            except Exception:
                log.exception("the %s verifier raised; the code counts as malformed", entry.format)
                return CodeResult(entry.format, Verdict.MALFORMED)
    return UNKNOWN_FORMAT
