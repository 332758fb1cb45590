"""Failed authentication limited per client address: a token bucket per address, bounded memory.

Each address may fail `burst` times in a row, then once more per `refill_s`. An address whose
bucket is empty is answered 429 with Retry-After for every request that needs a token, before the
token is looked up: a flood of guesses costs neither database lookups nor log lines. A token of
32 random bytes cannot be guessed anyway; the limit keeps scanners and broken clients cheap.

- An IPv6 client is keyed by its /64 network (one host usually holds a whole /64); IPv4 by
  address. Behind a reverse proxy every client is the proxy's address: put the limit there.
- At most `max_addresses` buckets are kept; the address that failed least recently is forgotten
  first. A forgotten address starts again with a full bucket: it gains at most `burst` attempts.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


def client_key(address: str | None) -> str:
    """The bucket an address counts against: IPv4 as is, IPv6 by its /64."""
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address  # a Unix socket path or the like: one bucket per name
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class FailureLimiter:
    def __init__(
        self,
        *,
        burst: int,
        refill_s: float,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.refill_s = refill_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.burst > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def _refilled(self, key: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is not None and now > bucket.at:
            earned = (now - bucket.at) / self.refill_s
            bucket.tokens = min(float(self.burst), bucket.tokens + earned)
            bucket.at = now
        return bucket

    def retry_after(self, address: str | None) -> int | None:
        """Whole seconds until `address` may try a token again; None: it may now."""
        if not self.enabled:
            return None
        bucket = self._refilled(client_key(address), self._clock())
        if bucket is None or bucket.tokens >= 1.0:
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) * self.refill_s))

    def failed(self, address: str | None) -> None:
        """One failed authentication from `address`."""
        if not self.enabled:
            return
        key, now = client_key(address), self._clock()
        bucket = self._refilled(key, now)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        bucket.tokens = max(0.0, bucket.tokens - 1.0)
