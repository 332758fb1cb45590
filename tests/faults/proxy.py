"""A fault-injecting TCP proxy on 127.0.0.1, between a kiosk and its collector (issue 8).

It reads each HTTP/1.1 exchange whole (request headers and Content-Length body; response with
Content-Length, chunked or until close), so a fault lands on one exchange and exactly where it is
meant to, not on whatever bytes happen to be in flight:

    fault            what the kiosk meets                           what the collector did
    pass             the answer                                     everything
    stall            no answer until its own timeout                nothing: never saw the request
    reset_request    a reset while sending                          nothing: a cut request
    reset_response   a reset after part of the answer               committed the entries
    lost_answer      a reset where the answer should be             committed and answered 200
    slow             the answer, both ways in small pieces          everything
                     with pauses

`refuse()` takes the proxy off the network: it stops listening (connections are refused) and
resets every open connection; `restore()` listens again on the same port. Which fault meets
each exchange is the test's `plan(request_line, number)`; `exchanges` records what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

FAULTS = ("pass", "stall", "reset_request", "reset_response", "lost_answer", "slow")
Plan = Callable[[str, int], str]
_HEAD_LIMIT = 64 * 1024


def pass_all(_request_line: str, _number: int) -> str:
    return "pass"


def random_plan(seed: int, weights: dict[str, float]) -> Plan:
    """Each exchange draws its fault from `weights` (fault -> weight) with a seeded generator."""
    rng = random.Random(seed)
    names, shares = list(weights), list(weights.values())
    return lambda _line, _number: rng.choices(names, shares)[0]


@dataclass
class Exchange:
    request_line: str
    fault: str
    request_bytes: int
    answered: bool = False  # the collector's answer reached the proxy (it had committed)
    status: int | None = None
    delivered: bool = False  # the whole answer was handed to the kiosk's connection


@dataclass
class FaultProxy:
    upstream_port: int
    plan: Plan = pass_all
    seed: int = 0
    host: str = "127.0.0.1"
    port: int = 0
    exchanges: list[Exchange] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random(self.seed)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def counts(self) -> Counter[str]:
        return Counter(exchange.fault for exchange in self.exchanges)

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> FaultProxy:
        await self._listen()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.refuse()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def refuse(self) -> None:
        """Off the network: new connections are refused, open ones reset."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        for writer in list(self._open):
            _reset(writer)

    async def restore(self) -> None:
        """Back on the network, on the same port."""
        if self._server is None:
            await self._listen()

    # -- one client connection -----------------------------------------------------------------

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._open.add(client_out)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                request = await _read_message(client_in, request=True)
                if request is None:
                    return
                head, _ = request
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                line = " ".join(line.split(" ")[:2])  # method and path
                fault = self.plan(line, len(self.exchanges))
                if fault not in FAULTS:
                    raise ValueError(f"unknown fault {fault!r}")
                exchange = Exchange(line, fault, sum(len(part) for part in request))
                self.exchanges.append(exchange)
                if fault == "stall":
                    # Nothing goes on; the kiosk gives up on its own and closes.
                    await client_in.read()
                    return
                if upstream is None:
                    try:
                        upstream = await asyncio.open_connection(self.host, self.upstream_port)
                    except OSError:
                        _reset(client_out)
                        return
                    self._open.add(upstream[1])
                up_in, up_out = upstream
                data = b"".join(request)
                if fault == "reset_request":
                    up_out.write(data[: self._rng.randrange(1, len(data))])
                    await up_out.drain()
                    await asyncio.sleep(0.01)
                    _reset(up_out)
                    _reset(client_out)
                    return
                if not await self._forward_unless_gone(client_in, up_out, data, fault == "slow"):
                    # The kiosk went away (killed) while its request was on the way: the rest
                    # of it never comes, the collector gets a cut request and a reset.
                    _reset(up_out)
                    return
                answer = await _read_message(up_in, request=False)
                if answer is None:
                    _reset(client_out)
                    return
                exchange.answered = True
                exchange.status = _status_of(answer[0])
                reply = b"".join(answer)
                if fault == "lost_answer":
                    _reset(client_out)
                    _reset(up_out)
                    return
                if fault == "reset_response":
                    client_out.write(reply[: self._rng.randrange(1, len(reply))])
                    await client_out.drain()
                    await asyncio.sleep(0.01)
                    _reset(client_out)
                    _reset(up_out)
                    return
                await self._send(client_out, reply, slow=fault == "slow")
                exchange.delivered = True
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            for writer in (client_out, upstream[1] if upstream else None):
                if writer is not None:
                    self._open.discard(writer)
                    writer.close()
            self._tasks.discard(task)

    async def _forward_unless_gone(
        self,
        client_in: asyncio.StreamReader,
        up_out: asyncio.StreamWriter,
        data: bytes,
        slow: bool,
    ) -> bool:
        """Send the request on; False when the kiosk's connection ended first. The kiosk sends
        nothing while it waits for an answer (no pipelining), so anything read means it left."""
        gone = asyncio.ensure_future(client_in.read(1))
        sending = asyncio.ensure_future(self._send(up_out, data, slow=slow))
        try:
            await asyncio.wait({gone, sending}, return_when=asyncio.FIRST_COMPLETED)
            if sending.done():
                sending.result()
                return True
            return False
        finally:
            for task in (gone, sending):
                task.cancel()
            await asyncio.gather(gone, sending, return_exceptions=True)

    async def _send(self, out: asyncio.StreamWriter, data: bytes, *, slow: bool) -> None:
        if not slow:
            out.write(data)
            await out.drain()
            return
        # Slow bytes: the first ones one at a time, then small pieces, a pause after each.
        at = 0
        while at < len(data):
            size = 1 if at < 64 else self._rng.randrange(64, 1024)
            out.write(data[at : at + size])
            await out.drain()
            at += size
            await asyncio.sleep(0.002 if at <= 64 else 0.001)


async def _read_message(
    reader: asyncio.StreamReader, *, request: bool
) -> tuple[bytes, bytes] | None:
    """(head, body) of one HTTP/1.1 message, or None at a clean end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    except asyncio.LimitOverrunError:
        raise ConnectionError("header too long") from None
    if len(head) > _HEAD_LIMIT:
        raise ConnectionError("header too long")
    headers = {}
    for raw in head.split(b"\r\n")[1:]:
        name, _, value = raw.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        return head, await reader.readexactly(int(headers[b"content-length"]))
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        return head, await _read_chunked(reader)
    status = _status_of(head)
    if request or status in (204, 304) or (status is not None and status < 200):
        return head, b""
    return head, await reader.read()  # no length: the body ends with the connection


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        body += size_line
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            body += await reader.readuntil(b"\r\n")  # no trailers from aiohttp
            return body
        body += await reader.readexactly(size + 2)


def _status_of(head: bytes) -> int | None:
    parts = head.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped link or a crashed peer does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
